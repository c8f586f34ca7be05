//! Resource files: what `meshmetric-cp -f` loads at start and what `meshmetricctl -f` reads.

use std::path::{Path, PathBuf};

use meshmetric_policies::{DocumentWarning, ParseError, Resource, parse_documents_all};

/// Why resource files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A path could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file holds an invalid document.
    #[error("{path}: {error}{}", details(.error))]
    Invalid {
        /// The file.
        path: String,
        /// The first invalid document.
        error: ParseError,
    },
    /// A directory holds no resource file.
    #[error("{0}: no .yaml, .yml or .json file here")]
    Empty(String),
}

fn details(e: &ParseError) -> String {
    match e {
        ParseError::Syntax(_) => String::new(),
        ParseError::Invalid { .. } => {
            let lines: Vec<String> = e.violations().iter().map(|v| format!("\n  {v}")).collect();
            lines.concat()
        }
    }
}

/// The resource files a path names: the path itself, or a directory's `.yaml`, `.yml` and
/// `.json` files in name order. Errors: the path cannot be read, or a directory holds none.
pub fn resource_files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let read = |source| LoadError::Read {
        path: path.display().to_string(),
        source,
    };
    if !path.is_dir() {
        std::fs::metadata(path).map_err(read)?;
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<_> = std::fs::read_dir(path)
        .map_err(read)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|f| matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")))
        .collect();
    if files.is_empty() {
        return Err(LoadError::Empty(path.display().to_string()));
    }
    files.sort();
    Ok(files)
}

/// Loads every `.yaml`, `.yml` and `.json` file under `paths` (files or directories, sorted),
/// all or nothing; returns the resources and their warnings. Errors name the file and every
/// violation.
pub fn load_paths(paths: &[PathBuf]) -> Result<(Vec<Resource>, Vec<DocumentWarning>), LoadError> {
    let mut files = Vec::new();
    for p in paths {
        files.extend(resource_files(p)?);
    }
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|source| LoadError::Read {
            path: f.display().to_string(),
            source,
        })?;
        let mut p = parse_documents_all(&text);
        if !p.errors.is_empty() {
            return Err(LoadError::Invalid {
                path: f.display().to_string(),
                error: p.errors.swap_remove(0),
            });
        }
        out.extend(p.resources);
        warnings.extend(p.warnings);
    }
    Ok((out, warnings))
}
