//! TLS through native-tls: the settings, the connector built from them, and the stream connections read and write.

use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::{Arc, Once};

use native_tls::{Certificate, Identity, Protocol, TlsConnector};

use crate::error::{Error, Result};
use crate::reader::Source;

/// TLS settings. Certificates and host names are always verified unless
/// [`insecure_skip_verify`](TlsSettings::insecure_skip_verify) is set.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) cert_file: Option<PathBuf>,
    pub(crate) key_file: Option<PathBuf>,
    pub(crate) server_name: Option<String>,
    pub(crate) insecure_skip_verify: bool,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file.as_ref().map(|_| "<set>"))
            .field("server_name", &self.server_name)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

/// What a connection needs to start TLS: the connector and the name to verify (`None`: the node's host).
#[derive(Clone)]
pub(crate) struct TlsClient {
    pub(crate) connector: Arc<TlsConnector>,
    pub(crate) server_name: Option<String>,
}

impl TlsSettings {
    /// Builds the connector: TLS 1.2 at least, the CA file added to the system roots, the client identity when
    /// both certificate and key are given.
    pub(crate) fn client(&self) -> Result<TlsClient> {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| Error::Config(format!("reading {}: {e}", p.display())));
        let mut b = TlsConnector::builder();
        b.min_protocol_version(Some(Protocol::Tlsv12));
        if let Some(ca) = &self.ca_file {
            let cert = Certificate::from_pem(&read(ca)?)
                .map_err(|e| Error::Config(format!("CA file {}: {e}", ca.display())))?;
            b.add_root_certificate(cert);
        }
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let id = Identity::from_pkcs8(&read(cert)?, &read(key)?)
                    .map_err(|e| Error::Config(format!("client certificate {}: {e}", cert.display())))?;
                b.identity(id);
            }
            (None, None) => {}
            _ => {
                return Err(Error::Config(
                    "a client certificate needs both tls_cert and tls_key".into(),
                ));
            }
        }
        if self.insecure_skip_verify {
            static WARN: Once = Once::new();
            WARN.call_once(|| log::warn!("TLS certificate and host name verification is OFF (insecure_skip_verify)"));
            b.danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true);
        }
        let connector = b.build().map_err(|e| Error::Config(format!("TLS setup: {e}")))?;
        Ok(TlsClient {
            connector: Arc::new(connector),
            server_name: self.server_name.clone(),
        })
    }
}

/// A connection's byte stream: TCP, TLS over TCP, or a Unix socket.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<native_tls::TlsStream<TcpStream>>),
    Unix(std::os::unix::net::UnixStream),
}

impl Stream {
    /// Starts TLS on `tcp` when asked, within the socket timeouts already set on it.
    pub(crate) fn open(node: &str, tcp: TcpStream, tls: Option<&TlsClient>) -> Result<Stream> {
        let Some(tls) = tls else { return Ok(Stream::Plain(tcp)) };
        let host = node
            .rsplit_once(':')
            .map_or(node, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = tls.server_name.as_deref().unwrap_or(host);
        match tls.connector.connect(name, tcp) {
            Ok(s) => Ok(Stream::Tls(Box::new(s))),
            Err(native_tls::HandshakeError::Failure(e)) => Err(Error::Tls {
                node: node.to_string(),
                detail: e.to_string(),
            }),
            Err(native_tls::HandshakeError::WouldBlock(_)) => Err(Error::Timeout {
                node: Some(node.to_string()),
            }),
        }
    }

    /// Makes reads and writes return `WouldBlock` instead of waiting (after the TLS handshake, which waits).
    pub(crate) fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.set_nonblocking(true),
            Stream::Tls(s) => s.get_ref().set_nonblocking(true),
            Stream::Unix(s) => s.set_nonblocking(true),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Plain(s) => s.as_fd(),
            Stream::Tls(s) => s.get_ref().as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl Source for Stream {
    /// TLS decrypts a whole record at a time: what is left of one is readable although the socket is not. (A
    /// socket readable with no reply in it, a TLS 1.3 session ticket, reads as `WouldBlock`: non-blocking reads
    /// never wait on it.)
    fn pending(&self) -> bool {
        match self {
            Stream::Tls(s) => s.buffered_read_size().is_ok_and(|n| n > 0),
            _ => false,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write_vectored(bufs),
            // TLS records are built from one buffer at a time.
            Stream::Tls(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}
