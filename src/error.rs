//! One error type for the library; every message names what was wrong so the CLI and the web app can
//! show it as is.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A problem with a file's contents (bad image, bad backbone file, bad torch checkpoint).
    #[error("{0}")]
    Invalid(String),
    /// Wraps another error with the file (or URL, or upload name) it concerns.
    #[error("{path}: {inner}")]
    InFile { path: String, inner: Box<Error> },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// `bail!`-style constructor for [`Error::Invalid`].
macro_rules! invalid {
    ($($arg:tt)*) => { $crate::error::Error::Invalid(format!($($arg)*)) };
}
pub(crate) use invalid;

pub trait InFile<T> {
    /// Names the file an error concerns.
    fn in_file(self, path: impl std::fmt::Display) -> Result<T>;
}

impl<T, E: Into<Error>> InFile<T> for std::result::Result<T, E> {
    /// The name is kept printable: a file's name may hold control characters.
    fn in_file(self, path: impl std::fmt::Display) -> Result<T> {
        self.map_err(|e| Error::InFile {
            path: crate::util::printable(&path.to_string()).into_owned(),
            inner: Box::new(e.into()),
        })
    }
}
