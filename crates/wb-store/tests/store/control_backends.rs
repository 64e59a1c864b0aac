//! A control store on each backend, and the macro that runs a story on both.

use std::sync::Arc;

use wb_crypto::DataKey;
use wb_store::sqlite::SqliteControl;
use wb_store::ControlStore;

use crate::pg_backend;

/// A control store of one backend, with whatever must outlive it.
pub struct Backend {
    _dir: Option<tempfile::TempDir>,
    pub control: Arc<dyn ControlStore>,
}

pub fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let control = SqliteControl::open(&dir.path().join("control.db"), &DataKey::generate())
        .expect("open control");
    Backend {
        _dir: Some(dir),
        control: Arc::new(control),
    }
}

/// A control store in a fresh database of the shared test cluster.
pub async fn postgres(prefix: &str) -> Backend {
    Backend {
        _dir: None,
        control: Arc::new(pg_backend::pg_control(prefix).await),
    }
}

/// Runs each story as one test per backend: `sqlite::<story>` and
/// `postgres::<story>` (databases named after `$prefix`).
#[macro_export]
macro_rules! on_both_control_backends {
    ($prefix:literal; $($story:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $story() {
                    let b = $crate::control_backends::sqlite();
                    super::$story(&*b.control).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $story() {
                    let b = $crate::control_backends::postgres($prefix).await;
                    super::$story(&*b.control).await;
                }
            )*
        }
    };
}
