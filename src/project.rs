//! The web app's project as one file (`.wickproject`): its classes, every sample's thumbnail and
//! features, the training settings, and the trained `.wick` model if there is one. "Export project"
//! writes it and "Open project" reads it back, so a project moves between browsers and machines
//! without recomputing anything.
//!
//! Layout (a safetensors file, format `wick-project`, version 1):
//! - `features`: F32 (samples, dim), the samples' backbone features in class order;
//! - `thumbnails`: U8 (total bytes), the samples' JPEG thumbnails one after another;
//! - `model`: U8, the `.wick` bytes (absent before the first training);
//! - `__metadata__`: `format`, `format_version`, and `meta`, the JSON of [`ProjectMeta`] (the backbone
//!   the features belong to, the classes with their samples' names and thumbnail lengths, the settings).

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::bundle::BackboneRef;
use crate::dataset::check_label;
use crate::error::{invalid, Result};

pub const FORMAT: &str = "wick-project";
pub const FORMAT_VERSION: &str = "1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectMeta {
    pub backbone: BackboneRef,
    pub classes: Vec<ClassMeta>,
    /// The app's training settings, kept as the app wrote them.
    pub settings: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMeta {
    pub name: String,
    pub samples: Vec<SampleMeta>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleMeta {
    /// The file name the image had (or "webcam").
    pub name: String,
    pub thumbnail_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub meta: ProjectMeta,
    pub features: Vec<f32>,
    pub thumbnails: Vec<u8>,
    pub model: Option<Vec<u8>>,
}

impl Project {
    pub fn samples(&self) -> usize {
        self.meta.classes.iter().map(|c| c.samples.len()).sum()
    }

    /// Checks that the parts agree: class names valid and distinct, one feature row of `dim` and one
    /// thumbnail per sample, finite features.
    pub fn check(&self, dim: usize) -> Result<()> {
        for (i, class) in self.meta.classes.iter().enumerate() {
            check_label(&class.name)?;
            if self.meta.classes[..i].iter().any(|c| c.name == class.name) {
                return Err(invalid!("class `{}` appears twice", class.name));
            }
        }
        let samples = self.samples();
        if self.features.len() != samples * dim {
            return Err(invalid!(
                "{} feature values for {samples} samples of {dim} (the features belong to another backbone?)",
                self.features.len()
            ));
        }
        let thumbnail_bytes: usize = self.meta.classes.iter().flat_map(|c| &c.samples).map(|s| s.thumbnail_bytes).sum();
        if thumbnail_bytes != self.thumbnails.len() {
            return Err(invalid!(
                "thumbnails hold {} bytes, the samples list {thumbnail_bytes}",
                self.thumbnails.len()
            ));
        }
        if self.features.iter().any(|v| !v.is_finite()) {
            return Err(invalid!("the features contain NaN or infinite values"));
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let features: Vec<u8> = self.features.iter().flat_map(|v| v.to_le_bytes()).collect();
        let rows = self.samples();
        let dim = self.features.len().checked_div(rows).unwrap_or(0);
        let mut parts = vec![
            ("features", Dtype::F32, vec![rows, dim], features.as_slice()),
            ("thumbnails", Dtype::U8, vec![self.thumbnails.len()], self.thumbnails.as_slice()),
        ];
        if let Some(model) = &self.model {
            parts.push(("model", Dtype::U8, vec![model.len()], model.as_slice()));
        }
        let views = parts
            .into_iter()
            .map(|(name, dtype, shape, data)| Ok((name, safetensors::tensor::TensorView::new(dtype, shape, data)?)))
            .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
            .map_err(|e| invalid!("cannot write the project: {e}"))?;
        let metadata: HashMap<String, String> = [
            ("format".to_string(), FORMAT.to_string()),
            ("format_version".to_string(), FORMAT_VERSION.to_string()),
            ("meta".to_string(), serde_json::to_string(&self.meta).expect("metadata serialises")),
        ]
        .into();
        safetensors::serialize(views, Some(metadata)).map_err(|e| invalid!("cannot write the project: {e}"))
    }

    /// Parses and checks a project file whose features must have `dim` values per sample.
    pub fn from_bytes(bytes: &[u8], dim: usize) -> Result<Self> {
        let not_project = |why: String| invalid!("not a valid Wick project file: {why}");
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| not_project(e.to_string()))?;
        let fields = header.metadata().as_ref().ok_or_else(|| not_project("it has no Wick metadata".into()))?;
        match fields.get("format").map(String::as_str) {
            Some(FORMAT) => {}
            Some(crate::bundle::FORMAT) => {
                return Err(not_project("this is a trained model (.wick), not a project; open it as a model".into()))
            }
            _ => return Err(not_project("it has no Wick metadata".into())),
        }
        if fields.get("format_version").map(String::as_str) != Some(FORMAT_VERSION) {
            return Err(invalid!(
                "Wick project format version {} is not supported (this build reads version {FORMAT_VERSION})",
                fields.get("format_version").map_or("?", String::as_str)
            ));
        }
        let meta: ProjectMeta = serde_json::from_str(fields.get("meta").map_or("", String::as_str))
            .map_err(|e| not_project(format!("bad metadata: {e}")))?;
        let file = SafeTensors::deserialize(bytes).map_err(|e| not_project(e.to_string()))?;
        let tensor = |name: &str, dtype: Dtype| -> Result<Option<Vec<u8>>> {
            match file.tensor(name) {
                Ok(view) if view.dtype() == dtype => Ok(Some(view.data().to_vec())),
                Ok(view) => Err(not_project(format!("`{name}` is {:?}, expected {dtype:?}", view.dtype()))),
                Err(_) => Ok(None),
            }
        };
        let features = tensor("features", Dtype::F32)?.ok_or_else(|| not_project("it has no features".into()))?;
        let project = Self {
            meta,
            features: features.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
            thumbnails: tensor("thumbnails", Dtype::U8)?.ok_or_else(|| not_project("it has no thumbnails".into()))?,
            model: tensor("model", Dtype::U8)?,
        };
        project.check(dim).map_err(|e| not_project(e.to_string()))?;
        Ok(project)
    }
}
