//! Watches files for changes (via their parent directories, so editor renames and Kubernetes
//! secret symlink swaps are seen) and notifies an actor with a message.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use actix::prelude::*;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

/// Sent to the owning actor when a watched file may have changed.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct FilesChanged;

/// How long a burst of file events must settle before the files are read (editors and
/// Kubernetes write in several steps).
pub const SETTLE: std::time::Duration = std::time::Duration::from_millis(150);

/// Runs `f` once the events stop for `SETTLE`: each call cancels the previous pending run.
pub fn debounce<A>(pending: &mut Option<SpawnHandle>, ctx: &mut Context<A>, f: fn(&mut A))
where
    A: Actor<Context = Context<A>>,
{
    if let Some(h) = pending.take() {
        ctx.cancel_future(h);
    }
    *pending = Some(ctx.run_later(SETTLE, move |act, _| f(act)));
}

/// Keeps the OS watcher alive; dropping it stops watching.
pub struct FileWatch {
    _watcher: RecommendedWatcher,
}

/// The directories to watch for `files` (deduplicated). Relative paths watch `.`.
pub fn watch_dirs(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    files
        .iter()
        .map(|f| match f.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect()
}

/// Whether an event on `changed` concerns one of `files` (compared by file name within the
/// watched directory; Kubernetes' `..data` symlink swaps count for every file in the dir).
pub fn concerns(files: &[PathBuf], changed: &Path) -> bool {
    let name = changed.file_name();
    if name.is_some_and(|n| n.to_string_lossy().starts_with("..")) {
        return true;
    }
    files.iter().any(|f| f.file_name() == name)
}

/// Starts watching `files`; `FilesChanged` is sent to `recipient` on relevant events.
pub fn watch(files: &[PathBuf], recipient: Recipient<FilesChanged>) -> notify::Result<FileWatch> {
    let owned: Vec<PathBuf> = files.to_vec();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) => {
                if event.kind.is_access() {
                    return;
                }
                if event.paths.iter().any(|p| concerns(&owned, p)) {
                    recipient.do_send(FilesChanged);
                }
            }
            Err(e) => tracing::warn!(error = %e, "file watch error"),
        })?;
    for dir in watch_dirs(files) {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    }
    Ok(FileWatch { _watcher: watcher })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_and_relevance() {
        let files = vec![
            PathBuf::from("/etc/r/config.yaml"),
            PathBuf::from("cert.pem"),
        ];
        let dirs = watch_dirs(&files);
        assert!(dirs.contains(Path::new("/etc/r")));
        assert!(dirs.contains(Path::new(".")));
        assert!(concerns(&files, Path::new("/etc/r/config.yaml")));
        assert!(concerns(&files, Path::new("/etc/r/..data")));
        assert!(!concerns(&files, Path::new("/etc/r/other.yaml")));
    }
}
