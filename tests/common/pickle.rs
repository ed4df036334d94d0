//! Writes legacy (non-zip) `torch.save` files from a description whose every field — dtypes, element
//! counts, sizes, strides, offsets — can be set to anything, lies included; and the pickle gadgets an
//! attacker would add (a memo that is fetched again and again, deep nesting).

/// One tensor of a state dict as the pickle describes it, and its storage.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    /// `FloatStorage`, `LongStorage`, …
    pub storage_type: String,
    pub key: String,
    /// The element count the persistent id declares.
    pub numel: i64,
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct CheckpointSpec {
    pub tensors: Vec<TensorSpec>,
    /// Storages written after the pickles: key, the element count written before the data, the data.
    pub storages: Vec<(String, u64, Vec<u8>)>,
    /// Extra values put into the sys-info pickle.
    pub gadget: Option<Gadget>,
}

#[derive(Debug, Clone, Copy)]
pub enum Gadget {
    /// A list memoised, then fetched from the memo and appended to itself `rounds` times (a reader
    /// that copies memoised values grows 2^rounds).
    MemoBomb { rounds: usize },
    /// `depth` lists, each inside the next.
    Nesting { depth: usize },
}

impl CheckpointSpec {
    /// A checkpoint of the given f32 tensors, stored contiguously, one storage each.
    pub fn contiguous(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Self {
        let mut spec = Self::default();
        for (i, (name, shape, values)) in tensors.iter().enumerate() {
            let mut stride = vec![1i64; shape.len()];
            for d in (0..shape.len().saturating_sub(1)).rev() {
                stride[d] = stride[d + 1] * shape[d + 1] as i64;
            }
            spec.tensors.push(TensorSpec {
                name: name.clone(),
                storage_type: "FloatStorage".into(),
                key: i.to_string(),
                numel: values.len() as i64,
                offset: 0,
                size: shape.iter().map(|&d| d as i64).collect(),
                stride,
            });
            spec.storages.push((
                i.to_string(),
                values.len() as u64,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
        }
        spec
    }

    /// The state dict's own pickle (the zip container's `data.pkl`): persistent ids with five items.
    pub fn state_dict_pickle(&self) -> Vec<u8> {
        self.object_pickle(false)
    }

    fn object_pickle(&self, legacy: bool) -> Vec<u8> {
        let mut p = Pickle::default();
        p.proto();
        p.global("collections", "OrderedDict");
        p.raw(b")R");
        p.raw(b"(");
        for t in &self.tensors {
            p.str(&t.name);
            p.global("torch._utils", "_rebuild_tensor_v2");
            p.raw(b"(");
            p.raw(b"(");
            p.str("storage");
            p.global("torch", &t.storage_type);
            p.str(&t.key);
            p.str("cpu");
            p.int(t.numel);
            if legacy {
                p.raw(b"N");
            }
            p.raw(b"t");
            p.raw(b"Q");
            p.int(t.offset);
            p.tuple(&t.size);
            p.tuple(&t.stride);
            p.raw(&[0x89]);
            p.raw(b"}");
            p.raw(b"tR");
        }
        p.raw(b"u");
        p.stop();
        p.0
    }

    /// This checkpoint in the zip container (PyTorch ≥ 1.6): the state dict's pickle as
    /// `archive/data.pkl`, each storage as `archive/data/<key>`.
    pub fn to_zip(&self) -> Vec<u8> {
        self.to_zip_with(|_, data| Some(data))
    }

    /// [`Self::to_zip`] with each entry passed through `edit` (None leaves it out).
    pub fn to_zip_with(&self, edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>) -> Vec<u8> {
        use std::io::Write;
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        let mut entries = vec![("archive/data.pkl".to_string(), self.state_dict_pickle())];
        entries.push(("archive/byteorder".into(), b"little".to_vec()));
        entries.extend(self.storages.iter().map(|(key, _, data)| (format!("archive/data/{key}"), data.clone())));
        for (name, data) in entries {
            if let Some(data) = edit(&name, data) {
                z.start_file(name, stored).unwrap();
                z.write_all(&data).unwrap();
            }
        }
        z.finish().unwrap().into_inner()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut p = Pickle::default();
        // magic number, protocol version, sys info
        p.proto();
        p.raw(&[0x8a, 10]);
        p.raw(b"\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19");
        p.stop();
        p.proto();
        p.int(1001);
        p.stop();
        p.proto();
        p.raw(b"}");
        match self.gadget {
            Some(Gadget::MemoBomb { rounds }) => {
                p.raw(b"]");
                p.raw(&[b'q', 0]); // BINPUT 0
                for _ in 0..rounds {
                    p.raw(b"(");
                    p.raw(&[b'h', 0, b'h', 0]); // BINGET 0, twice
                    p.raw(b"e"); // APPENDS
                    p.raw(&[b'q', 0]); // the grown list replaces memo 0
                }
                p.raw(b"b"); // BUILD: sets it as the dict's state
            }
            Some(Gadget::Nesting { depth }) => {
                for _ in 0..depth {
                    p.raw(b"]");
                }
                for _ in 1..depth {
                    p.raw(b"a");
                }
                p.raw(b"b");
            }
            None => {}
        }
        p.stop();
        p.0.extend(self.object_pickle(true));
        // storage keys
        p.proto();
        p.raw(b"](");
        for (key, _, _) in &self.storages {
            p.str(key);
        }
        p.raw(b"e");
        p.stop();
        let mut out = p.0;
        for (_, count, data) in &self.storages {
            out.extend(count.to_le_bytes());
            out.extend(data);
        }
        out
    }
}

#[derive(Default)]
struct Pickle(Vec<u8>);

impl Pickle {
    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn proto(&mut self) {
        self.raw(&[0x80, 2]);
    }
    fn stop(&mut self) {
        self.raw(b".");
    }
    fn int(&mut self, v: i64) {
        if let Ok(small) = i32::try_from(v) {
            self.raw(b"J");
            self.raw(&small.to_le_bytes());
        } else {
            self.raw(&[0x8a, 8]);
            self.raw(&v.to_le_bytes());
        }
    }
    fn str(&mut self, s: &str) {
        self.raw(b"X");
        self.raw(&(s.len() as u32).to_le_bytes());
        self.raw(s.as_bytes());
    }
    fn global(&mut self, module: &str, name: &str) {
        self.raw(b"c");
        self.raw(format!("{module}\n{name}\n").as_bytes());
    }
    fn tuple(&mut self, items: &[i64]) {
        self.raw(b"(");
        for &i in items {
            self.int(i);
        }
        self.raw(b"t");
    }
}
