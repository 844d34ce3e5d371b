//! Twins and checkpoints share one file format: safetensors with a JSON
//! document describing the tensors in the header metadata, written whole
//! or not at all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::fsio;

/// `tensors` and `meta` (as JSON under `key`) to `path`, atomically.
pub fn save<M: Serialize>(
    path: &Path,
    key: &str,
    meta: &M,
    tensors: &[(String, Tensor)],
) -> Result<()> {
    let json = serde_json::to_string(meta).map_err(|e| Error::invalid(e.to_string()))?;
    let info = HashMap::from([(key.to_string(), json)]);
    fsio::write_atomic(path, |tmp| {
        safetensors::serialize_to_file(
            tensors.iter().map(|(k, v)| (k.as_str(), v)),
            Some(info),
            tmp,
        )
        .map_err(|e| Error::data(tmp, e.to_string()))
    })
}

/// A loaded file: its metadata and tensors, and how to complain about it.
#[derive(Debug)]
pub struct Loaded<M> {
    /// The header's document.
    pub meta: M,
    tensors: HashMap<String, Tensor>,
    path: PathBuf,
    expected: &'static str,
}

impl<M: DeserializeOwned> Loaded<M> {
    /// `expected` says what the file should have been, for errors
    /// ("a twin written by `hilt twin fit`").
    pub fn read(path: &Path, key: &str, expected: &'static str) -> Result<Self> {
        let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad = |r: String| Error::data(path, format!("{r} (expected {expected})"));
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&buf).map_err(|e| bad(e.to_string()))?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(key))
            .ok_or_else(|| bad(format!("no '{key}' metadata")))?;
        let meta: M = serde_json::from_str(json).map_err(|e| bad(format!("{key}: {e}")))?;
        let tensors = candle_core::safetensors::load_buffer(&buf, &Device::Cpu)
            .map_err(|e| bad(e.to_string()))?;
        Ok(Loaded {
            meta,
            tensors,
            path: path.to_path_buf(),
            expected,
        })
    }
}

impl<M> Loaded<M> {
    /// An error naming the file and what it should have been.
    pub fn bad(&self, reason: String) -> Error {
        Error::data(&self.path, format!("{reason} (expected {})", self.expected))
    }

    /// The tensor `name`, or an error naming the file and the tensor.
    pub fn take(&mut self, name: &str) -> Result<Tensor> {
        match self.tensors.remove(name) {
            Some(t) => Ok(t),
            None => Err(self.bad(format!("tensor '{name}' missing"))),
        }
    }
}
