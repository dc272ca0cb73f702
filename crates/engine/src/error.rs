//! The error type: everything a user can get wrong is reported here, naming the layer or
//! file, the shapes involved and, where one exists, a hint.

/// Errors returned by ocellus. Internal invariants use `assert!`; anything a user can
/// cause (a shape that does not fit, a bad configuration, a bad file) is an `Error`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor of the wrong shape was given to a layer.
    #[error("{layer}: expects input {expected}, but got {got}{hint}", hint = fmt_hint(.hint))]
    Shape {
        layer: String,
        expected: String,
        got: String,
        hint: String,
    },
    /// `backward` was called on a layer that has not run `forward` since it was built.
    #[error("{layer}: backward called before forward; run forward first so the layer keeps what backward needs")]
    BackwardBeforeForward { layer: String },
    /// A layer or optimiser was configured with impossible settings.
    #[error("{layer}: {message}")]
    Config { layer: String, message: String },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its contents are not what they should be.
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    /// Training was asked to stop (Ctrl-C) and stopped after a complete step.
    #[error("training interrupted in epoch {epoch} after batch {batch} of {batches}")]
    Interrupted {
        epoch: usize,
        batch: usize,
        batches: usize,
    },
    /// The training loss stopped being a finite number.
    #[error("training diverged: the loss is {loss} at epoch {epoch}, batch {batch}; try a lower learning rate")]
    Diverged {
        epoch: usize,
        batch: usize,
        loss: f32,
    },
}

fn fmt_hint(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!(" ({hint})")
    }
}

/// Formats a shape the way every message in ocellus shows it: `(128, 32, 16, 16)`.
pub fn shape_str(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    if parts.len() == 1 {
        format!("({},)", parts[0])
    } else {
        format!("({})", parts.join(", "))
    }
}

/// Result with the ocellus [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A shape error for `layer`; `expected` describes what fits, `got` is the shape seen.
    pub fn shape(layer: impl Into<String>, expected: impl Into<String>, got: &[usize]) -> Self {
        Error::Shape {
            layer: layer.into(),
            expected: expected.into(),
            got: shape_str(got),
            hint: String::new(),
        }
    }

    /// Adds a hint to a shape error (other errors are returned unchanged).
    pub fn with_hint(self, hint: impl Into<String>) -> Self {
        match self {
            Error::Shape {
                layer,
                expected,
                got,
                ..
            } => Error::Shape {
                layer,
                expected,
                got,
                hint: hint.into(),
            },
            other => other,
        }
    }

    /// A file at `path` could not be read or written.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// The file at `path` was read, but its contents are not what they should be.
    pub fn format(path: impl AsRef<std::path::Path>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().display().to_string(),
            message: message.into(),
        }
    }

    /// A configuration error for `layer`.
    pub fn config(layer: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            layer: layer.into(),
            message: message.into(),
        }
    }

    /// Prefixes the layer name with its position in a network, e.g. `layer 5 (linear)`.
    pub fn in_layer(self, position: &str) -> Self {
        let prefix = |name: String| format!("{position} ({name})");
        match self {
            Error::Shape {
                layer,
                expected,
                got,
                hint,
            } => Error::Shape {
                layer: prefix(layer),
                expected,
                got,
                hint,
            },
            Error::BackwardBeforeForward { layer } => Error::BackwardBeforeForward {
                layer: prefix(layer),
            },
            Error::Config { layer, message } => Error::Config {
                layer: prefix(layer),
                message,
            },
            other => other,
        }
    }
}
