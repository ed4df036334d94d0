//! The web app's shell (wasm32 only): download the model with progress, take an image from the file
//! picker or a drop, and show its top-5 ImageNet classes — all computed here, in the page.
//!
//! The markup lives in `index.html`; this module only finds elements by id and wires them to the
//! shared library.

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::rc::Rc;

use candle_core::{Device, Tensor};
use js_sys::Uint8Array;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{Document, DragEvent, Event, File, HtmlElement, HtmlImageElement, HtmlInputElement, Response};

use crate::backbone::{Backbone, Prediction};
use crate::head::{self, FeatureSet, TrainConfig};
use crate::preprocess::decode_image;

/// Served next to the page (Trunk copies `static/`).
const MODEL_URL: &str = "static/efficientnet-lite0-int8.safetensors";

thread_local! {
    static BACKBONE: RefCell<Option<Rc<Backbone>>> = const { RefCell::new(None) };
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    spawn_local(async {
        if let Err(e) = run().await {
            show_status(&format!("Could not start: {}", describe(&e)), true);
        }
    });
}

fn document() -> Document {
    web_sys::window().expect("a window").document().expect("a document")
}

fn element<T: JsCast>(id: &str) -> T {
    document()
        .get_element_by_id(id)
        .unwrap_or_else(|| panic!("index.html has no #{id}"))
        .dyn_into::<T>()
        .unwrap_or_else(|_| panic!("#{id} has an unexpected type"))
}

fn describe(e: &JsValue) -> String {
    e.as_string()
        .or_else(|| e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())))
        .unwrap_or_else(|| format!("{e:?}"))
}

fn show_status(text: &str, is_error: bool) {
    let status: HtmlElement = element("status");
    status.set_text_content(Some(text));
    status.set_class_name(if is_error { "error" } else { "" });
}

fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}

async fn run() -> Result<(), JsValue> {
    let bytes = download_with_progress(MODEL_URL).await?;
    let backbone =
        Backbone::from_model_file(&bytes, &Device::Cpu).map_err(|e| JsValue::from_str(&format!("{MODEL_URL}: {e}")))?;
    show_status(
        &format!(
            "Model ready: {} ({:.1} MB). Choose or drop an image.",
            backbone.meta.architecture,
            bytes.len() as f64 / 1e6
        ),
        false,
    );
    BACKBONE.with(|b| *b.borrow_mut() = Some(Rc::new(backbone)));

    let input: HtmlInputElement = element("file");
    input.set_disabled(false);
    let on_change = Closure::<dyn FnMut(Event)>::new(move |_| {
        let input: HtmlInputElement = element("file");
        if let Some(file) = input.files().and_then(|f| f.get(0)) {
            spawn_local(classify_file(file));
        }
    });
    input.add_event_listener_with_callback("change", on_change.as_ref().unchecked_ref())?;
    on_change.forget();

    let drop_zone: HtmlElement = element("drop");
    let on_drag = Closure::<dyn FnMut(DragEvent)>::new(|e: DragEvent| {
        e.prevent_default();
        element::<HtmlElement>("drop").set_class_name(if e.type_() == "dragover" { "drop over" } else { "drop" });
    });
    for kind in ["dragover", "dragleave"] {
        drop_zone.add_event_listener_with_callback(kind, on_drag.as_ref().unchecked_ref())?;
    }
    on_drag.forget();
    let on_drop = Closure::<dyn FnMut(DragEvent)>::new(|e: DragEvent| {
        e.prevent_default();
        element::<HtmlElement>("drop").set_class_name("drop");
        if let Some(file) = e.data_transfer().and_then(|d| d.files()).and_then(|f| f.get(0)) {
            spawn_local(classify_file(file));
        }
    });
    drop_zone.add_event_listener_with_callback("drop", on_drop.as_ref().unchecked_ref())?;
    on_drop.forget();
    Ok(())
}

/// Fetches `url`, updating the progress bar as bytes arrive.
async fn download_with_progress(url: &str) -> Result<Vec<u8>, JsValue> {
    let window = web_sys::window().expect("a window");
    let response: Response = JsFuture::from(window.fetch_with_str(url)).await?.dyn_into()?;
    if !response.ok() {
        return Err(JsValue::from_str(&format!("{url}: HTTP {}", response.status())));
    }
    let total: f64 = response.headers().get("content-length")?.and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let progress: web_sys::HtmlProgressElement = element("model-progress");
    let body = response.body().ok_or_else(|| JsValue::from_str("empty response"))?;
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().dyn_into()?;
    let mut bytes = Vec::with_capacity(total as usize);
    loop {
        let chunk = JsFuture::from(reader.read()).await?;
        if js_sys::Reflect::get(&chunk, &"done".into())?.as_bool().unwrap_or(true) {
            break;
        }
        let value: Uint8Array = js_sys::Reflect::get(&chunk, &"value".into())?.dyn_into()?;
        bytes.extend(value.to_vec());
        if total > 0.0 {
            progress.set_value(bytes.len() as f64 / total);
        }
        show_status(&format!("Downloading model… {:.1} / {:.1} MB", bytes.len() as f64 / 1e6, total / 1e6), false);
    }
    progress.set_value(1.0);
    Ok(bytes)
}

async fn classify_file(file: File) {
    let name = file.name();
    let result = async {
        let buffer = JsFuture::from(file.array_buffer()).await?;
        let bytes = Uint8Array::new(&buffer).to_vec();
        let image = decode_image(&bytes).map_err(|e| JsValue::from_str(&format!("{name}: {e}")))?;
        let url = web_sys::Url::create_object_url_with_blob(&file)?;
        let preview: HtmlImageElement = element("preview-image");
        if !preview.src().is_empty() {
            web_sys::Url::revoke_object_url(&preview.src())?;
        }
        preview.set_src(&url);
        preview.set_alt(&name);
        let backbone =
            BACKBONE.with(|b| b.borrow().clone()).ok_or_else(|| JsValue::from_str("the model is not loaded yet"))?;
        let start = now_ms();
        let top = backbone.top_k(&[image], 5).map_err(|e| JsValue::from_str(&e.to_string()))?;
        Ok::<_, JsValue>((top.into_iter().next().unwrap_or_default(), now_ms() - start))
    }
    .await;
    match result {
        Ok((predictions, ms)) => {
            render_predictions(&predictions);
            show_status(&format!("{name}: classified in {ms:.0} ms, in this tab."), false);
        }
        Err(e) => {
            render_predictions(&[]);
            show_status(&describe(&e), true);
        }
    }
}

fn render_predictions(predictions: &[Prediction]) {
    let list: HtmlElement = element("predictions");
    list.set_inner_html("");
    let doc = document();
    for p in predictions {
        let item = doc.create_element("li").expect("li");
        item.set_attribute("data-index", &p.index.to_string()).expect("attribute");
        let label = doc.create_element("span").expect("span");
        label.set_class_name("label");
        label.set_text_content(Some(&p.label));
        let bar = doc.create_element("meter").expect("meter");
        bar.set_attribute("value", &p.probability.to_string()).expect("attribute");
        bar.set_attribute("aria-label", &format!("{} probability", p.label)).expect("attribute");
        let percent = doc.create_element("span").expect("span");
        percent.set_class_name("percent");
        percent.set_text_content(Some(&format!("{:.1}%", 100.0 * p.probability)));
        for child in [&label, &bar, &percent] {
            item.append_child(child).expect("append");
        }
        list.append_child(&item).expect("append");
    }
}

/// Backbone forward time in this tab: `{"batch": B, "ms_per_image": …}` (used by the benchmark
/// harness in `benches/`).
#[wasm_bindgen]
pub fn bench_backbone(batch: usize, iters: usize) -> Result<String, JsValue> {
    let backbone =
        BACKBONE.with(|b| b.borrow().clone()).ok_or_else(|| JsValue::from_str("the model is not loaded yet"))?;
    let crop = backbone.meta.preprocess.crop as usize;
    let input = Tensor::randn(0f32, 1f32, (batch, 3, crop, crop), &Device::Cpu)
        .map_err(|e| JsValue::from_str(&e.to_string()))?;
    let run = || {
        backbone.features(&input).and_then(|f| Ok(f.to_vec2::<f32>()?)).map_err(|e| JsValue::from_str(&e.to_string()))
    };
    run()?; // warm-up
    let start = now_ms();
    for _ in 0..iters {
        run()?;
    }
    let ms = (now_ms() - start) / (iters * batch) as f64;
    Ok(format!(r#"{{"batch":{batch},"ms_per_image":{ms}}}"#))
}

/// Head training time in this tab on the given features (row-major, `labels.len()` rows): a linear
/// head, `epochs` epochs of mini-batches of `batch_size`, best of `iters` runs after a warm-up. Returns
/// `{"ms": …, "train_accuracy": …}` (used by the benchmark harness in `benches/`).
#[wasm_bindgen]
pub fn bench_head(
    features: &[f32],
    labels: &[u8],
    epochs: usize,
    batch_size: usize,
    iters: usize,
) -> Result<String, JsValue> {
    let fail = |e: crate::Error| JsValue::from_str(&e.to_string());
    if labels.is_empty() || !features.len().is_multiple_of(labels.len()) {
        return Err(JsValue::from_str("features must hold one row per label"));
    }
    let set = FeatureSet {
        dim: features.len() / labels.len(),
        features: features.to_vec(),
        labels: labels.iter().map(|&l| l as u32).collect(),
    };
    let classes = *labels.iter().max().unwrap_or(&0) as usize + 1;
    let config = TrainConfig { epochs, batch_size, patience: 0, label_smoothing: 0.0, ..TrainConfig::default() };
    let run = || head::train(&set, None, classes, &config, &Device::Cpu, |_| ControlFlow::Continue(())).map_err(fail);
    run()?; // warm-up
    let (mut best, mut accuracy) = (f64::INFINITY, 0.0);
    for _ in 0..iters.max(1) {
        let start = now_ms();
        let trained = run()?;
        best = best.min(now_ms() - start);
        accuracy = trained.history.last().map_or(0.0, |h| h.train_accuracy);
    }
    Ok(format!(r#"{{"ms":{best},"train_accuracy":{accuracy}}}"#))
}
