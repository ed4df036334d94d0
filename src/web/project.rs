//! The project file: the page's classes, samples, settings and model in one file, checked here
//! ([`crate::formats::project`]) on the way out and on the way in.

use wasm_bindgen::prelude::*;

use super::fail;
use crate::formats::project::{Project, ProjectMeta};

/// A project file read and checked, its parts read by the page's storage.
#[wasm_bindgen]
pub struct ProjectFile(Project);

#[wasm_bindgen]
impl ProjectFile {
    /// JSON of the project's metadata (backbone, classes and samples, settings).
    #[wasm_bindgen(getter)]
    pub fn meta(&self) -> String {
        serde_json::to_string(&self.0.meta).expect("serialises")
    }

    #[wasm_bindgen(getter)]
    pub fn features(&self) -> Vec<f32> {
        self.0.features.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn thumbnails(&self) -> Vec<u8> {
        self.0.thumbnails.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn sources(&self) -> Vec<u8> {
        self.0.sources.clone()
    }

    /// The `.wick` model, when the project has one.
    #[wasm_bindgen(getter)]
    pub fn model(&self) -> Option<Vec<u8>> {
        self.0.model.clone()
    }

    /// The backbone file the model runs on, when its last layers trained.
    #[wasm_bindgen(getter)]
    pub fn model_backbone(&self) -> Option<Vec<u8>> {
        self.0.model_backbone.clone()
    }
}

/// Writes a project file. `meta` is the JSON of the project's metadata.
#[wasm_bindgen]
pub fn encode_project(
    meta: &str,
    features: Vec<f32>,
    thumbnails: Vec<u8>,
    sources: Vec<u8>,
    model: Option<Vec<u8>>,
    model_backbone: Option<Vec<u8>>,
    dim: usize,
) -> Result<Vec<u8>, JsError> {
    let meta: ProjectMeta = serde_json::from_str(meta).map_err(|e| fail(format!("bad project metadata: {e}")))?;
    let project = Project { meta, features, thumbnails, sources, model, model_backbone };
    project.check(dim).map_err(fail)?;
    project.to_bytes().map_err(fail)
}

/// The pooling of a project file's features (`stages` or `last`; `last` where its settings name
/// none: files written before pooling was a setting), from its metadata alone: what
/// [`decode_project`]'s `dim` then is.
#[wasm_bindgen]
pub fn project_pooling(bytes: &[u8]) -> Result<String, JsError> {
    Ok(Project::pooling_of(bytes).map_err(fail)?.name().to_string())
}

/// Reads and checks a project file made for the backbone `backbone_sha256` (feature size `dim`).
#[wasm_bindgen]
pub fn decode_project(bytes: &[u8], backbone_sha256: &str, dim: usize) -> Result<ProjectFile, JsError> {
    let project = Project::from_bytes(bytes, dim).map_err(fail)?;
    if project.meta.backbone.sha256 != backbone_sha256 {
        return Err(JsError::new(&format!(
            "this project's features were computed by backbone {}, not by the one loaded here",
            project.meta.backbone.id
        )));
    }
    Ok(ProjectFile(project))
}
