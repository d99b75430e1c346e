//! TLS test fixtures: certificates made with the `openssl` CLI, and a Redis with a TLS port.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use super::server::{Options, free_port};
use super::{Kind, Server};

/// A CA, a server certificate for `localhost` and `127.0.0.1` (`server`), one for `localhost` alone
/// (`server-dns`), a client certificate, and a second, unrelated CA.
pub struct Certs {
    dir: PathBuf,
}

impl Certs {
    pub fn get() -> &'static Certs {
        static CERTS: OnceLock<Certs> = OnceLock::new();
        CERTS.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("kvcache-tls-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let run = |args: &[&str]| {
                let out = Command::new("openssl")
                    .args(args)
                    .current_dir(&dir)
                    .output()
                    .expect("openssl");
                assert!(
                    out.status.success(),
                    "openssl {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            for ca in ["ca", "other-ca"] {
                run(&[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.crt"),
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=kvcache test {ca}"),
                ]);
            }
            std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
            std::fs::write(dir.join("server-dns.ext"), "subjectAltName=DNS:localhost\n").unwrap();
            std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
            for who in ["server", "server-dns", "client"] {
                run(&[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{who}.key"),
                    "-out",
                    &format!("{who}.csr"),
                    "-subj",
                    &format!("/CN={who}"),
                ]);
                run(&[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{who}.csr"),
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &format!("{who}.crt"),
                    "-days",
                    "2",
                    "-extfile",
                    &format!("{who}.ext"),
                ]);
            }
            Certs { dir }
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Server arguments for a TLS port with the test certificates.
pub fn tls_args(tls_port: u16, require_client_cert: bool) -> Vec<String> {
    tls_args_with(tls_port, require_client_cert, "server")
}

/// Like `tls_args`, with the server certificate `cert` (`server` or `server-dns`).
pub fn tls_args_with(tls_port: u16, require_client_cert: bool, cert: &str) -> Vec<String> {
    let certs = Certs::get();
    let p = |n: &str| certs.path(n).display().to_string();
    vec![
        "--tls-port".into(),
        tls_port.to_string(),
        "--tls-cert-file".into(),
        p(&format!("{cert}.crt")),
        "--tls-key-file".into(),
        p(&format!("{cert}.key")),
        "--tls-ca-cert-file".into(),
        p("ca.crt"),
        "--tls-auth-clients".into(),
        if require_client_cert { "yes" } else { "no" }.into(),
    ]
}

/// A Redis with a plaintext port (for the admin and the "plaintext port" case) and a TLS port.
pub fn tls_server(require_client_cert: bool) -> (Server, u16) {
    let tls_port = free_port();
    let extra = tls_args(tls_port, require_client_cert);
    let server = Server::start(
        Kind::Redis,
        free_port(),
        Options {
            cluster: false,
            extra,
            ..Options::default()
        },
    );
    (server, tls_port)
}
