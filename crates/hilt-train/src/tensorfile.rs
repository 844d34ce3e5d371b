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
    save_with(path, &[(key, json(meta)?)], tensors)
}

/// `meta` as the JSON document `save_with` takes.
pub fn json<M: Serialize>(meta: &M) -> Result<String> {
    serde_json::to_string(meta).map_err(|e| Error::invalid(e.to_string()))
}

/// `tensors` and several JSON documents, each under its key, to `path`,
/// atomically.
pub fn save_with(path: &Path, docs: &[(&str, String)], tensors: &[(String, Tensor)]) -> Result<()> {
    let info: HashMap<String, String> = docs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
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
    /// Every document of the header, `meta`'s included.
    docs: HashMap<String, String>,
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
        let docs = header.metadata().clone().unwrap_or_default();
        let json = docs
            .get(key)
            .ok_or_else(|| bad(format!("no '{key}' metadata")))?;
        let meta: M = serde_json::from_str(json).map_err(|e| bad(format!("{key}: {e}")))?;
        let tensors = candle_core::safetensors::load_buffer(&buf, &Device::Cpu)
            .map_err(|e| bad(e.to_string()))?;
        Ok(Loaded {
            meta,
            docs,
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

    /// The document under `key`, if the file has one.
    pub fn doc<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.docs
            .get(key)
            .map(|json| serde_json::from_str(json).map_err(|e| self.bad(format!("{key}: {e}"))))
            .transpose()
    }

    /// Every tensor whose name starts with `prefix`, taken out.
    pub fn take_prefixed(&mut self, prefix: &str) -> HashMap<String, Tensor> {
        let names: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        names
            .into_iter()
            .filter_map(|k| self.tensors.remove_entry(&k))
            .collect()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor `name`, or an error naming the file and the tensor.
    pub fn take(&mut self, name: &str) -> Result<Tensor> {
        match self.tensors.remove(name) {
            Some(t) => Ok(t),
            None => Err(self.bad(format!("tensor '{name}' missing"))),
        }
    }
}
