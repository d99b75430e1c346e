//! Python arguments as the library's: keys, priorities, timeouts, and keyword options as `Config` settings.

use std::time::Duration;

use kvcache_redis::{Config, Priority};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyString};

use crate::errors::to_py;

/// The keys of one call, copied into one buffer (keys are small; a Python object may change once the GIL is
/// released).
pub struct Keys {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl Keys {
    /// Each key as bytes, in order.
    pub fn slices(&self) -> Vec<&[u8]> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let key = &self.data[start..end];
                start = end;
                key
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }
}

/// The bytes of one key: `str` (as UTF-8), `bytes`, `bytearray`, or any other buffer.
pub fn key_into(out: &mut Vec<u8>, key: &Bound<'_, PyAny>, what: &dyn Fn() -> String) -> PyResult<()> {
    if let Ok(s) = key.cast::<PyString>() {
        out.extend_from_slice(s.to_str()?.as_bytes());
    } else if let Ok(b) = key.cast::<PyBytes>() {
        out.extend_from_slice(b.as_bytes());
    } else if let Ok(b) = key.cast::<PyByteArray>() {
        out.extend_from_slice(&b.to_vec());
    } else {
        match crate::buffers::View::new(key, crate::buffers::Access::Write, what) {
            Ok(view) => out.extend_from_slice(view.bytes()),
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "{} must be str or bytes, not {}",
                    what(),
                    type_name(key)
                )));
            }
        }
    }
    Ok(())
}

/// One key.
pub fn key(key: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let mut out = Vec::new();
    key_into(&mut out, key, &|| "the key".to_string())?;
    Ok(out)
}

/// A sequence (or any iterable) of keys.
pub fn keys(keys: &Bound<'_, PyAny>) -> PyResult<Keys> {
    if keys.is_instance_of::<PyString>() || keys.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "keys must be a list (or other iterable) of keys, not a single str or bytes",
        ));
    }
    let mut out = Keys {
        data: Vec::new(),
        ends: Vec::new(),
    };
    for (i, key) in keys.try_iter()?.enumerate() {
        key_into(&mut out.data, &key?, &|| format!("key {i}"))?;
        out.ends.push(out.data.len());
    }
    Ok(out)
}

/// A priority: a `kvcache_redis.Priority` (LMCache's numbering, 1 = PEEK ... 4 = PUT) or its name.
pub fn priority(p: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Priority>> {
    let Some(p) = p.filter(|p| !p.is_none()) else {
        return Ok(None);
    };
    if let Ok(s) = p.cast::<PyString>() {
        return match s.to_str()?.to_ascii_lowercase().as_str() {
            "peek" => Ok(Some(Priority::Peek)),
            "prefetch" => Ok(Some(Priority::Prefetch)),
            "get" => Ok(Some(Priority::Get)),
            "put" => Ok(Some(Priority::Put)),
            other => Err(PyValueError::new_err(format!(
                "bad priority {other:?}: peek, prefetch, get or put (or kvcache_redis.Priority)"
            ))),
        };
    }
    if p.is_instance_of::<PyInt>() && !p.is_instance_of::<PyBool>() {
        return match p.extract::<i64>()? {
            1 => Ok(Some(Priority::Peek)),
            2 => Ok(Some(Priority::Prefetch)),
            3 => Ok(Some(Priority::Get)),
            4 => Ok(Some(Priority::Put)),
            n => Err(PyValueError::new_err(format!(
                "bad priority {n}: 1 (PEEK) to 4 (PUT), as kvcache_redis.Priority numbers them"
            ))),
        };
    }
    Err(PyTypeError::new_err(format!(
        "priority must be a kvcache_redis.Priority or its name, not {}",
        type_name(p)
    )))
}

/// A duration in seconds: a positive, finite number.
pub fn seconds(name: &str, v: &Bound<'_, PyAny>) -> PyResult<Duration> {
    if v.is_instance_of::<PyBool>() || !(v.is_instance_of::<PyFloat>() || v.is_instance_of::<PyInt>()) {
        return Err(PyTypeError::new_err(format!(
            "{name} is a duration in seconds (int or float), not {}",
            type_name(v)
        )));
    }
    let s: f64 = v.extract()?;
    if !(s.is_finite() && s > 0.0 && s < 1e9) {
        return Err(PyValueError::new_err(format!(
            "{name} must be a positive number of seconds, not {s}"
        )));
    }
    Ok(Duration::from_secs_f64(s))
}

/// A call's `timeout=`: `None` for the client's.
pub fn timeout(t: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Duration>> {
    t.filter(|t| !t.is_none()).map(|t| seconds("timeout", t)).transpose()
}

/// Options given in seconds, and the URL option each stands for.
const DURATIONS: &[(&str, &str)] = &[
    ("timeout", "timeout_ms"),
    ("request_timeout", "timeout_ms"),
    ("connect_timeout", "connect_timeout_ms"),
    ("stall_threshold", "stall_threshold_ms"),
    ("silence_timeout", "silence_timeout_ms"),
    ("drain_timeout", "drain_timeout_ms"),
    ("wait_timeout", "wait_timeout_ms"),
];

/// Applies keyword options to `config`: every URL option by its name (durations also in seconds, without `_ms`),
/// plus `username`, `password` and `tls`.
pub fn apply(py: Python<'_>, mut config: Config, options: Option<&Bound<'_, PyDict>>) -> PyResult<Config> {
    let Some(options) = options else {
        return Ok(config);
    };
    let mut seen_url_names: Vec<String> = Vec::new();
    let (mut username, mut password) = (None::<String>, None::<String>);
    // `wait_replicas` must come before `wait_timeout_ms` (as in a URL).
    let mut items: Vec<(String, Bound<'_, PyAny>)> = options
        .iter()
        .map(|(k, v)| Ok((k.extract::<String>()?, v)))
        .collect::<PyResult<_>>()?;
    items.sort_by_key(|(k, _)| k.starts_with("wait_timeout"));
    for (name, value) in items {
        if value.is_none() {
            continue;
        }
        let bad_type =
            |want: &str| PyTypeError::new_err(format!("option {name} must be {want}, not {}", type_name(&value)));
        match name.as_str() {
            "username" => username = Some(value.extract().map_err(|_| bad_type("a str"))?),
            "password" => password = Some(value.extract().map_err(|_| bad_type("a str"))?),
            "tls" => config = config.tls(value.cast::<PyBool>().map_err(|_| bad_type("a bool"))?.is_true()),
            _ => {
                let (url_name, text) = match DURATIONS.iter().find(|(n, _)| *n == name) {
                    Some((_, url_name)) => {
                        let d = seconds(&name, &value)?;
                        match name.as_str() {
                            "timeout" | "request_timeout" => {
                                config = config.request_timeout(d);
                                ("timeout_ms", None)
                            }
                            "connect_timeout" => {
                                config = config.connect_timeout(d);
                                ("connect_timeout_ms", None)
                            }
                            "stall_threshold" => {
                                config = config.stall_threshold(d);
                                ("stall_threshold_ms", None)
                            }
                            "silence_timeout" => {
                                config = config.silence_timeout(d);
                                ("silence_timeout_ms", None)
                            }
                            "drain_timeout" => {
                                config = config.drain_timeout(d);
                                ("drain_timeout_ms", None)
                            }
                            _ => (*url_name, Some(d.as_millis().max(1).to_string())),
                        }
                    }
                    None => (name.as_str(), Some(option_text(&name, &value)?)),
                };
                if seen_url_names.iter().any(|n| n == url_name) {
                    return Err(PyTypeError::new_err(format!(
                        "option {name} given twice (as seconds and as {url_name}, or under two names)"
                    )));
                }
                seen_url_names.push(url_name.to_string());
                if let Some(text) = text {
                    config = config.option(url_name, &text).map_err(|e| to_py(py, &e))?;
                }
            }
        }
    }
    match (username, password) {
        (user, Some(password)) => config = config.auth(user.as_deref(), &password),
        (Some(_), None) => {
            return Err(PyValueError::new_err("username needs a password (password=...)"));
        }
        (None, None) => {}
    }
    Ok(config)
}

/// An option's value as its URL text: `true`/`false` for booleans, digits for integers, strings as they are.
fn option_text(name: &str, v: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(if b.is_true() { "true" } else { "false" }.into());
    }
    if v.is_instance_of::<PyInt>() {
        let n: i128 = v.extract()?;
        if n < 0 {
            return Err(PyValueError::new_err(format!(
                "option {name} must not be negative, not {n}"
            )));
        }
        return Ok(n.to_string());
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(s.to_str()?.to_string());
    }
    if let Ok(p) = v.extract::<std::path::PathBuf>() {
        return Ok(p.to_string_lossy().into_owned());
    }
    Err(PyTypeError::new_err(format!(
        "option {name} must be an int, bool or str, not {}",
        type_name(v)
    )))
}

/// The name of an object's type, for messages.
pub fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}
