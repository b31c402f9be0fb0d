//! The config actor: owns the config file. It loads and checks it, publishes each new valid
//! version, and keeps the previous one when an edit is invalid (logging the error).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::prelude::*;
use arc_swap::ArcSwap;

use super::file_watch::{debounce, watch, FileWatch, FilesChanged};
use crate::config::{self, Config, ConfigError};

/// Callback run with every newly accepted configuration (including the first).
pub type OnConfig = Box<dyn Fn(Arc<Config>) + Send>;

/// Callback run with the error of every rejected reload (the first load's error is returned
/// from `start` instead).
pub type OnReject = Box<dyn Fn(&ConfigError) + Send>;

/// What `ConfigActor::start` hands back.
#[derive(Clone)]
pub struct ConfigHandle {
    pub addr: Addr<ConfigActor>,
    /// The configuration currently in force.
    pub current: Arc<ArcSwap<Config>>,
}

/// Plain logic behind the actor: decide what to do with a freshly read file.
pub struct ConfigReloader {
    path: PathBuf,
    last_text: Option<String>,
    /// The settings of the configuration in force, to spot truncated edits.
    last_settings: Option<config::Settings>,
}

/// Result of one reload attempt.
#[derive(Debug)]
pub enum Reload {
    Unchanged,
    Accepted(Box<Config>),
    Rejected(ConfigError),
}

impl ConfigReloader {
    pub fn new(path: &Path) -> Self {
        ConfigReloader {
            path: path.to_path_buf(),
            last_text: None,
            last_settings: None,
        }
    }

    /// Reads the file; unchanged text is ignored, invalid text is rejected (the caller keeps
    /// the previous configuration).
    pub fn reload(&mut self) -> Reload {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(source) => {
                return Reload::Rejected(ConfigError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        if self.last_text.as_deref() == Some(text.as_str()) {
            return Reload::Unchanged;
        }
        let result = config::parse(&text, &self.path).and_then(|settings| {
            if let Some(message) = self
                .last_settings
                .as_ref()
                .and_then(|prev| config::lost_in_reload(prev, &settings))
            {
                return Err(ConfigError::Suspicious {
                    path: self.path.clone(),
                    message,
                });
            }
            config::build(settings)
        });
        match result {
            Ok(cfg) => {
                self.last_text = Some(text);
                self.last_settings = Some(cfg.settings.clone());
                Reload::Accepted(Box::new(cfg))
            }
            Err(e) => Reload::Rejected(e),
        }
    }
}

pub struct ConfigActor {
    reloader: ConfigReloader,
    on_update: OnConfig,
    on_reject: OnReject,
    current: Arc<ArcSwap<Config>>,
    watch: Option<FileWatch>,
    pending: Option<SpawnHandle>,
}

impl ConfigActor {
    /// Loads `path` (returning its error if invalid), publishes it through `on_update`, then
    /// watches the file for changes. Must run inside an actix system.
    pub fn start(path: &Path, on_update: OnConfig) -> Result<ConfigHandle, ConfigError> {
        Self::start_with_reject(path, on_update, Box::new(|_| {}))
    }

    /// Like `start`, and `on_reject` hears about every rejected edit (for metrics).
    pub fn start_with_reject(
        path: &Path,
        on_update: OnConfig,
        on_reject: OnReject,
    ) -> Result<ConfigHandle, ConfigError> {
        let mut reloader = ConfigReloader::new(path);
        let first = match reloader.reload() {
            Reload::Accepted(cfg) => Arc::new(*cfg),
            Reload::Rejected(e) => return Err(e),
            Reload::Unchanged => unreachable!("the first read is never unchanged"),
        };
        on_update(first.clone());
        let current = Arc::new(ArcSwap::new(first));
        let actor = ConfigActor {
            reloader,
            on_update,
            on_reject,
            current: current.clone(),
            watch: None,
            pending: None,
        };
        let addr = actor.start();
        Ok(ConfigHandle { addr, current })
    }

    fn reload_now(&mut self) {
        match self.reloader.reload() {
            Reload::Unchanged => {}
            Reload::Accepted(cfg) => {
                let cfg = Arc::new(*cfg);
                self.current.store(cfg.clone());
                tracing::info!(path = %self.reloader.path.display(), routes = cfg.routes.len(), "config reloaded");
                (self.on_update)(cfg);
            }
            Reload::Rejected(e) => {
                tracing::error!(path = %self.reloader.path.display(), error = %e, "config reload rejected; keeping the previous configuration");
                (self.on_reject)(&e);
            }
        }
    }
}

impl Actor for ConfigActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        match watch(
            std::slice::from_ref(&self.reloader.path),
            ctx.address().recipient(),
        ) {
            Ok(w) => self.watch = Some(w),
            Err(e) => {
                tracing::error!(error = %e, path = %self.reloader.path.display(), "cannot watch config file; hot reload is off")
            }
        }
    }
}

/// Asks the actor to re-read the file now (also what SIGHUP does).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReloadNow;

impl Handler<FilesChanged> for ConfigActor {
    type Result = ();

    fn handle(&mut self, _: FilesChanged, ctx: &mut Self::Context) {
        debounce(&mut self.pending, ctx, |act: &mut ConfigActor| {
            act.pending = None;
            act.reload_now();
        });
    }
}

impl Handler<ReloadNow> for ConfigActor {
    type Result = ();

    fn handle(&mut self, _: ReloadNow, _: &mut Self::Context) {
        self.reload_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloader_keeps_last_good() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "routes:\n  - {from: https://a.test, to: http://x}\n").unwrap();
        let mut r = ConfigReloader::new(&path);
        assert!(matches!(r.reload(), Reload::Accepted(c) if c.routes.len() == 1));
        assert!(matches!(r.reload(), Reload::Unchanged));
        std::fs::write(
            &path,
            "routes:\n  - {from: https://a.test, to: http://x, timeout: x}\n",
        )
        .unwrap();
        match r.reload() {
            Reload::Rejected(e) => assert!(e.to_string().contains("`timeout`"), "{e}"),
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            r.reload(),
            Reload::Rejected(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn truncated_edits_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let good = "cookie_secret: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nroutes:\n  - {from: https://a.test, to: http://x}\n";
        std::fs::write(&path, good).unwrap();
        let mut r = ConfigReloader::new(&path);
        assert!(matches!(r.reload(), Reload::Accepted(_)));
        for (text, expect) in [
            ("", "is empty"),
            ("  \n", "is empty"),
            (
                "cookie_secret: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
                "removes all 1 routes",
            ),
            (
                "cookie_secret: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nroutes: []\n",
                "removes all 1 routes",
            ),
            (
                "routes:\n  - {from: https://a.test, to: http://x}\n",
                "removes `cookie_secret`",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            match r.reload() {
                Reload::Rejected(e) => {
                    let e = e.to_string();
                    assert!(
                        e.contains(expect) && e.contains("config.yaml"),
                        "{text:?}: {e}"
                    )
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        // A file that was never loaded: empty is an error too.
        let fresh = dir.path().join("fresh.yaml");
        std::fs::write(&fresh, "").unwrap();
        assert!(matches!(
            ConfigReloader::new(&fresh).reload(),
            Reload::Rejected(ConfigError::Empty { .. })
        ));
        // Routes going from N to M > 0, and the secret moving to a file, are ordinary edits.
        std::fs::write(
            &path,
            "cookie_secret_file: /run/c\nroutes:\n  - {from: https://b.test, to: http://y}\n",
        )
        .unwrap();
        assert!(matches!(r.reload(), Reload::Accepted(_)));
    }

    #[actix_rt::test]
    async fn actor_publishes_good_edits_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "routes:\n  - {from: https://a.test, to: http://x}\n").unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let rejected = Arc::new(std::sync::Mutex::new(Vec::new()));
        let r = rejected.clone();
        let handle = ConfigActor::start_with_reject(
            &path,
            Box::new(move |c| s.lock().unwrap().push(c.routes.len())),
            Box::new(move |e| r.lock().unwrap().push(e.to_string())),
        )
        .unwrap();
        std::fs::write(
            &path,
            "routes: [{from: https://a.test, to: http://x, timeout: bad}]\n",
        )
        .unwrap();
        handle.addr.send(ReloadNow).await.unwrap();
        std::fs::write(
            &path,
            "routes:\n  - {from: https://a.test, to: http://x}\n  - {from: https://b.test, to: http://y}\n",
        )
        .unwrap();
        handle.addr.send(ReloadNow).await.unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![1, 2]);
        assert_eq!(handle.current.load().routes.len(), 2);
        let rejected = rejected.lock().unwrap();
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert!(rejected[0].contains("`timeout`"), "{rejected:?}");
        let err = ConfigActor::start(Path::new("/nonexistent/c.yaml"), Box::new(|_| {}))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/c.yaml"));
    }
}
