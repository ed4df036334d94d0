//! The drop-in classifier for any web page: Wick's runtime — its single-threaded, inference-only wasm
//! (`scripts/build-web-feature.sh runtime`: a simd128 build and its relaxed-SIMD twin, which
//! `wick-worker.js` picks between at run time) and the ES module over it (`static/runtime/`) — beside the model's
//! own files (the backbone file and the `.wick`, as the page runs them), a demo page, `wick.d.ts`
//! and a `package.json`. It answers as the page does because it is the page's code on the page's files.

use serde_json::json;

use super::Exported;
use crate::error::{invalid, Result};
use crate::util::printable;

/// The names of the runtime's built files, in the folder the build writes: wasm-bindgen's bindings
/// and the wasm they load, for the `web-runtime` feature with simd128, then with relaxed SIMD too
/// (the int8 products' dot instruction: Chrome/Edge ≥ 114, Firefox ≥ 145; Safari refuses the module).
pub const RUNTIME_FILES: [&str; 4] =
    ["wick_runtime.js", "wick_runtime_bg.wasm", "wick_runtime_relaxed.js", "wick_runtime_relaxed_bg.wasm"];

/// The runtime's built files, in [`RUNTIME_FILES`]' order.
pub type WebRuntime<'a> = [&'a [u8]; RUNTIME_FILES.len()];

/// Every file a web export may hold (`model.wick` only with a trained head).
pub const FILES: [&str; 15] = [
    "index.html",
    "demo.js",
    "demo.css",
    "wick.js",
    "wick-worker.js",
    "wick.d.ts",
    "wick_runtime.js",
    "wick_runtime_bg.wasm",
    "wick_runtime_relaxed.js",
    "wick_runtime_relaxed_bg.wasm",
    "wick-model.json",
    "backbone.safetensors",
    "model.wick",
    "package.json",
    "README.md",
];

/// The manifest's format name and version, which `static/runtime/wick.js` checks.
const MANIFEST: (&str, u32) = ("wick-web", 1);

/// The web export of `model`, which was built from `backbone_file` and (with a head) `wick`: (file
/// name, contents), in the order they are written.
pub fn to_web(
    model: &Exported,
    backbone_file: &[u8],
    wick: Option<&[u8]>,
    runtime: WebRuntime,
) -> Result<Vec<(&'static str, Vec<u8>)>> {
    for (name, bytes) in RUNTIME_FILES.iter().zip(runtime) {
        if name.ends_with(".wasm") && !bytes.starts_with(b"\0asm") {
            return Err(invalid!("the runtime's {name} is not WebAssembly"));
        }
        if name.ends_with(".js") && std::str::from_utf8(bytes).is_err() {
            return Err(invalid!("the runtime's {name} is not text"));
        }
    }
    if wick.is_some() != model.head.is_some() {
        return Err(invalid!("a web export takes the .wick file exactly when the model has a trained head"));
    }
    let manifest = json!({
        "format": MANIFEST.0,
        "version": MANIFEST.1,
        "backbone": "backbone.safetensors",
        "classifier": wick.map(|_| "model.wick"),
    });
    let mut files: Vec<(&'static str, Vec<u8>)> = vec![
        ("index.html", include_bytes!("../../static/runtime/index.html").to_vec()),
        ("demo.js", include_bytes!("../../static/runtime/demo.js").to_vec()),
        ("demo.css", include_bytes!("../../static/runtime/demo.css").to_vec()),
        ("wick.js", include_bytes!("../../static/runtime/wick.js").to_vec()),
        ("wick-worker.js", include_bytes!("../../static/runtime/wick-worker.js").to_vec()),
        ("wick.d.ts", include_bytes!("../../static/runtime/wick.d.ts").to_vec()),
    ];
    files.extend(RUNTIME_FILES.into_iter().zip(runtime).map(|(name, bytes)| (name, bytes.to_vec())));
    files.push(("wick-model.json", pretty(&manifest)));
    files.push(("backbone.safetensors", backbone_file.to_vec()));
    if let Some(wick) = wick {
        files.push(("model.wick", wick.to_vec()));
    }
    let shipped: Vec<&str> = files.iter().map(|(name, _)| *name).filter(|n| *n != "index.html").collect();
    files.push(("package.json", pretty(&package(model, &shipped))));
    files.push(("README.md", readme(model).into_bytes()));
    Ok(files)
}

fn pretty(value: &serde_json::Value) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(value).expect("serialises");
    text.push(b'\n');
    text
}

/// The classes as a short phrase: the first few, and how many more.
fn classes_phrase(labels: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut phrase = labels.iter().take(SHOWN).map(|l| printable(l).into_owned()).collect::<Vec<_>>().join(", ");
    if labels.len() > SHOWN {
        phrase.push_str(&format!(" and {} more", labels.len() - SHOWN));
    }
    phrase
}

/// An npm package of the folder (`npm pack` makes it), marked private: it is the user's model.
fn package(model: &Exported, files: &[&str]) -> serde_json::Value {
    json!({
        "name": "wick-classifier",
        "version": "1.0.0",
        "private": true,
        "description": format!("An image classifier trained with Wick: {} classes ({})", model.labels.len(), classes_phrase(&model.labels)),
        "type": "module",
        "main": "wick.js",
        "types": "wick.d.ts",
        "files": files,
    })
}

fn readme(model: &Exported) -> String {
    let source = &model.backbone.meta.source;
    format!(
        "# An image classifier trained with Wick\n\n\
         {classes} classes: {phrase}. Backbone: {architecture} ({id}).\n\n\
         Serve this folder from any static host (no special headers) and open `index.html`, or use it\n\
         from your own page:\n\n\
         ```js\n\
         import {{ load }} from './wick.js';\n\
         const classifier = await load();\n\
         const ranked = await classifier.classify(document.querySelector('img'), {{ topK: 3 }});\n\
         // [{{ label, probability, index }}, …], most likely first\n\
         ```\n\n\
         `classify` and `features` take an `<img>`, `<canvas>`, `<video>`, `ImageBitmap`, `ImageData`,\n\
         `OffscreenCanvas` or `Blob`; the types are in `wick.d.ts`. The model runs in a Web Worker on\n\
         WebAssembly, in the visitor's browser: no image leaves the device, and nothing is fetched from\n\
         another origin. A Content-Security-Policy needs `script-src 'self' 'wasm-unsafe-eval'` and\n\
         `worker-src 'self'`.\n\n\
         Files: `wick.js` (the module), `wick-worker.js`, `wick_runtime.js` and `wick_runtime_bg.wasm`\n\
         (Wick's runtime, MIT OR Apache-2.0), `wick_runtime_relaxed.js` and `wick_runtime_relaxed_bg.wasm`\n\
         (the same with WebAssembly relaxed SIMD, which the worker loads instead where the browser\n\
         compiles it: Chrome/Edge 114+, Firefox 145+), `wick-model.json` (names the model's files),\n\
         `backbone.safetensors` (the backbone's weights){head}, and a demo: `index.html`, `demo.js`,\n\
         `demo.css`.\n\n\
         The backbone's weights come from {package} ({file}, sha256 {sha256}), license: {license}.\n",
        classes = model.labels.len(),
        phrase = classes_phrase(&model.labels),
        architecture = printable(&model.backbone.meta.architecture),
        id = printable(&model.backbone.id),
        head = if model.head.is_some() { ", `model.wick` (the trained classifier)" } else { "" },
        package = printable(&source.package),
        file = printable(&source.file),
        sha256 = printable(&source.sha256),
        license = printable(&source.license),
    )
}
