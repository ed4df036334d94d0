//! Labelled images: the folder-per-class layout (`DIR/<label>/<image>`), class-name rules, and the
//! stratified train/validation split.

use std::path::{Path, PathBuf};

use crate::error::{invalid, Result};
use crate::util::rng::Rng;

/// Longest class name accepted, in characters.
pub const MAX_LABEL_CHARS: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub path: PathBuf,
    /// Index into [`LabelledFolder::labels`].
    pub label: u32,
}

/// A folder of class folders. Labels and samples are in name order, so the same folder always gives
/// the same class indices and the same split.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledFolder {
    pub root: PathBuf,
    pub labels: Vec<String>,
    pub samples: Vec<Sample>,
    /// Entries of class folders that are not regular files (a FIFO, a device, a socket, a link to
    /// one, a dangling link), left unopened, and why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// What a class folder's entry is, its links followed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Folder,
    File,
    /// Anything else (a FIFO would block a read for ever; `/dev/zero` never ends): named, not read.
    Other(&'static str),
}

fn kind_of(path: &Path) -> Kind {
    let Ok(meta) = std::fs::metadata(path) else {
        return Kind::Other("a link to nothing, or it cannot be read");
    };
    let t = meta.file_type();
    if t.is_dir() {
        Kind::Folder
    } else if t.is_file() {
        Kind::File
    } else {
        Kind::Other(special(t))
    }
}

#[cfg(unix)]
fn special(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(not(unix))]
fn special(_: std::fs::FileType) -> &'static str {
    "not a regular file"
}

/// Refuses `path` unless it is a regular file (or a link to one): a FIFO, a device or a socket named
/// as an image would block a read for ever, or never end.
pub fn regular_file(path: &Path) -> Result<()> {
    match kind_of(path) {
        Kind::File => Ok(()),
        Kind::Folder => {
            Err(invalid!("{}: a folder, not an image file", crate::util::printable(&path.display().to_string())))
        }
        Kind::Other(what) => Err(invalid!(
            "{}: {what}, not an image file; it was not read",
            crate::util::printable(&path.display().to_string())
        )),
    }
}

/// A class name must be non-empty (after trimming), at most [`MAX_LABEL_CHARS`] long, and free of
/// control characters; it is shown in tables, charts and file names.
pub fn check_label(label: &str) -> Result<()> {
    if label.trim().is_empty() {
        return Err(invalid!("a class name is empty"));
    }
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(invalid!("class name `{label}` is longer than {MAX_LABEL_CHARS} characters"));
    }
    if label.chars().any(char::is_control) {
        return Err(invalid!("class name {label:?} contains control characters"));
    }
    Ok(())
}

/// The classes of a classifier: at least two, each valid, no duplicates.
pub fn check_labels(labels: &[String]) -> Result<()> {
    for label in labels {
        check_label(label)?;
    }
    match labels.len() {
        0 => return Err(invalid!("there are no classes")),
        1 => {
            return Err(invalid!(
                "there is only one class (`{}`): a classifier needs at least two classes to tell apart",
                labels[0]
            ))
        }
        _ => {}
    }
    for (i, label) in labels.iter().enumerate() {
        if labels[..i].contains(label) {
            return Err(invalid!("class `{label}` appears twice"));
        }
    }
    Ok(())
}

/// Reads `dir/<label>/<file>`: every visible sub-folder is a class and every visible regular file in
/// it a sample (whether it is a readable image is found out when it is decoded); links are followed,
/// and anything that is not a regular file is left unopened and listed in `skipped`. Fails on a
/// missing folder, a folder without class folders, a class name that is not valid UTF-8 or is
/// empty, and a class folder without files.
pub fn scan_folder(dir: &Path) -> Result<LabelledFolder> {
    let shown = dir.display();
    let entries = |d: &Path| -> Result<Vec<(String, PathBuf, Kind)>> {
        let mut out = Vec::new();
        let read = std::fs::read_dir(d).map_err(|e| invalid!("{}: cannot read the folder: {e}", d.display()))?;
        for entry in read {
            let entry = entry.map_err(|e| invalid!("{}: cannot read the folder: {e}", d.display()))?;
            let path = entry.path();
            let name = entry.file_name();
            if name.as_encoded_bytes().starts_with(b".") {
                continue; // hidden files and folders (.DS_Store, .git, ...)
            }
            let kind = kind_of(&path);
            let is_dir = kind == Kind::Folder;
            let name = name.into_string().map_err(|raw| {
                invalid!(
                    "{}: the name is not valid UTF-8 ({:?}); class and file names must be UTF-8",
                    d.join(&raw).display(),
                    raw
                )
            });
            match name {
                Ok(name) => out.push((name, path, kind)),
                // A file whose name is not UTF-8 can still be read; a class folder's name cannot be a label.
                Err(e) if is_dir => return Err(e),
                Err(_) => out.push((path.to_string_lossy().into_owned(), path, kind)),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    };
    if !dir.is_dir() {
        return Err(invalid!("{shown}: no such folder"));
    }
    let mut labels = Vec::new();
    let mut samples = Vec::new();
    let mut skipped = Vec::new();
    for (label, class_dir, kind) in entries(dir)? {
        if kind != Kind::Folder {
            continue;
        }
        check_label(&label).map_err(|e| invalid!("{}: {e}", class_dir.display()))?;
        let mut files = Vec::new();
        for (_, path, kind) in entries(&class_dir)? {
            match kind {
                Kind::File => files.push(path),
                Kind::Folder => {}
                Kind::Other(what) => skipped.push((path, format!("{what}: not read"))),
            }
        }
        if files.is_empty() {
            return Err(invalid!(
                "{}: class `{label}` has no images; add some or remove the folder",
                class_dir.display()
            ));
        }
        let index = labels.len() as u32;
        samples.extend(files.into_iter().map(|path| Sample { path, label: index }));
        labels.push(label);
    }
    if labels.is_empty() {
        return Err(invalid!("{shown}: no class folders found; expected {shown}/<class name>/<image files>"));
    }
    Ok(LabelledFolder { root: dir.to_path_buf(), labels, samples, skipped })
}

/// Splits sample indices into (train, validation), class by class: each class gives
/// `round(fraction · n)` images to validation, but at least one to each side when it has two or more
/// (a class with a single image goes to training).
/// Refuses a share outside [0, 1).
pub fn stratified_split(labels: &[u32], classes: usize, fraction: f32, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    check_validation_share(fraction)?;
    let mut rng = Rng::new(seed);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for class in 0..classes as u32 {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rng.shuffle(&mut members);
        let n = members.len();
        let n_val = if fraction <= 0.0 || n < 2 { 0 } else { ((fraction * n as f32).round() as usize).clamp(1, n - 1) };
        val.extend_from_slice(&members[..n_val]);
        train.extend_from_slice(&members[n_val..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    Ok((train, val))
}

/// Every class (`classes` names them) has a sample among `labels`: a class the user made and left
/// empty cannot be learnt. (A CIFAR-10 run with `--limit` may lack a class; it is not asked.)
pub fn check_every_class_has_samples(labels: &[u32], classes: &[String]) -> Result<()> {
    for (c, name) in classes.iter().enumerate() {
        if !labels.contains(&(c as u32)) {
            return Err(invalid!("class `{name}` has no images: add some or delete the class"));
        }
    }
    Ok(())
}

/// The share of each class held out for validation: at least 0 and below 1.
pub fn check_validation_share(share: f32) -> Result<()> {
    if !(0.0..1.0).contains(&share) {
        return Err(invalid!("the validation share must be at least 0 and below 1, not {share}"));
    }
    Ok(())
}
