//! Loading dialplans from disk for the pure dialplan crate: the shell reads files and checks
//! prompt files exist; validation and everything else is in `siaga-dialplan`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use siaga_dialplan::{Dialplan, Source, validate};

/// Reads and validates plan files. On failure the error text lists every problem with
/// `file:line` and a hint.
pub fn load(files: &[PathBuf]) -> Result<Arc<Dialplan>, String> {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in files {
        match std::fs::read_to_string(path) {
            Ok(text) => sources.push(Source::new(path.clone(), text)),
            Err(e) => errors.push(format!(
                "{}: error: cannot read the dialplan: {e}\n  hint: check the path given to --dialplan or [dialplan] files",
                path.display()
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    validate(&sources, &|prompt: &Path| prompt.is_file())
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// A prompt's playing time from its size (8 kHz mono 16-bit: 16 000 bytes a second).
pub fn prompt_duration(path: &Path) -> Duration {
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Duration::from_millis(bytes.saturating_sub(44) / 16)
}
