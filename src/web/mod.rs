//! The library's face to JavaScript (wasm32 only): each file converts JavaScript values to the
//! library's and back and maps errors, nothing more. The page (`static/app.js` and its modules in
//! `static/app/`) owns the DOM and the storage; everything that computes — decoding, the backbone,
//! training, metrics, the `.wick` and project formats — is the shared library. [`Session`] and
//! [`Training`] live in the Web Worker (`static/worker.js`), so the page never freezes.
//!
//! - [`session`]: the backbone and the loaded model — embedding, classifying, where it looks;
//! - [`training`]: a training run, one step per call;
//! - [`project`]: the project file; [`insight`]: the data map and the label check;
//! - [`bench`]: the page's benchmarks (for `benches/`);
//! - `export`: the model in other tools' formats (only in the build with the `export` feature);
//! - `runtime`: the drop-in classifier's runtime, alone in the `web-runtime` feature's build (the page's
//!   modules are left out of it).

use wasm_bindgen::prelude::*;
#[cfg(not(feature = "web-runtime"))]
use wasm_bindgen::JsCast;
#[cfg(not(feature = "web-runtime"))]
use wasm_bindgen_futures::JsFuture;

#[cfg(not(feature = "web-runtime"))]
mod bench;
#[cfg(feature = "export")]
mod export;
#[cfg(not(feature = "web-runtime"))]
mod insight;
#[cfg(not(feature = "web-runtime"))]
mod project;
#[cfg(feature = "web-runtime")]
mod runtime;
#[cfg(not(feature = "web-runtime"))]
mod session;
#[cfg(not(feature = "web-runtime"))]
mod training;

#[cfg(feature = "web-runtime")]
pub use runtime::Runtime;
#[cfg(not(feature = "web-runtime"))]
pub use session::Session;
#[cfg(not(feature = "web-runtime"))]
pub use training::Training;

/// Starts the pool of `threads` Web Workers that the backbone and the head run on (the page's
/// multi-threaded build only; the page calls it once, before anything computes).
#[cfg(feature = "web-threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

#[cfg(not(feature = "web-runtime"))]
/// How many threads the backbone and the head run on: the pool's size in the multi-threaded build, 1
/// in the single-threaded one.
#[wasm_bindgen]
pub fn available_threads() -> usize {
    crate::kernels::available_threads()
}

/// Any library error as the page's `Error`, its message kept.
fn fail(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

#[cfg(not(feature = "web-runtime"))]
fn now_ms() -> f64 {
    js_sys::Date::now()
}

#[cfg(not(feature = "web-runtime"))]
/// The Wick format a file names (`wick-backbone` for a backbone file, `wick-classifier` for a
/// `.wick`), or undefined for anything else.
#[wasm_bindgen]
pub fn wick_format(bytes: &[u8]) -> Option<String> {
    crate::formats::format_of(bytes)
}

#[cfg(not(feature = "web-runtime"))]
/// The sha256 of the backbone a backbone file was derived from (its recorded source), or undefined
/// for anything else: the page tells a backbone whose last layers trained from its own backbone
/// (a model's companion) from one to switch to.
#[wasm_bindgen]
pub fn backbone_source(bytes: &[u8]) -> Option<String> {
    crate::formats::backbone_file::read(bytes).ok().map(|(meta, _)| meta.source.sha256)
}

#[cfg(not(feature = "web-runtime"))]
/// Fetches `url` (the backbone file), calling `on_progress(received_bytes, total_bytes)` as bytes
/// arrive (`total_bytes` is 0 when the server does not say). Works in the page and in a worker.
#[wasm_bindgen]
pub async fn download(url: String, on_progress: js_sys::Function) -> Result<Vec<u8>, JsError> {
    let fetched = match web_sys::window() {
        Some(window) => window.fetch_with_str(&url),
        None => js_sys::global().unchecked_into::<web_sys::WorkerGlobalScope>().fetch_with_str(&url),
    };
    let js = |e: JsValue| JsError::new(&format!("{url}: {}", e.as_string().unwrap_or_else(|| format!("{e:?}"))));
    let response: web_sys::Response = JsFuture::from(fetched).await.map_err(js)?.unchecked_into();
    if !response.ok() {
        return Err(JsError::new(&format!("{url}: HTTP {}", response.status())));
    }
    let total: f64 = response.headers().get("content-length").map_err(js)?.and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let body = response.body().ok_or_else(|| JsError::new(&format!("{url}: empty response")))?;
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut bytes = Vec::with_capacity(total as usize);
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(js)?;
        if js_sys::Reflect::get(&chunk, &"done".into()).map_err(js)?.as_bool().unwrap_or(true) {
            break;
        }
        let value: js_sys::Uint8Array = js_sys::Reflect::get(&chunk, &"value".into()).map_err(js)?.unchecked_into();
        bytes.extend(value.to_vec());
        on_progress.call2(&JsValue::NULL, &(bytes.len() as f64).into(), &total.into()).map_err(js)?;
    }
    Ok(bytes)
}
