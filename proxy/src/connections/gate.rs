//! [`Gate`]: admission and per-connection settings for a listener whose
//! connections need no PROXY header (the admin listener).

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use super::{ListenerKind, Settings, admission};
use crate::state::EdgeState;

/// A [`ServerApp`] that admits a connection under the listener's cap, then
/// serves it with `inner` under the connection's [`Settings`].
pub(crate) struct Gate<A> {
    state: Arc<EdgeState>,
    listener: ListenerKind,
    inner: Arc<A>,
}

impl<A> Gate<A> {
    /// Gates `inner` as `listener`.
    pub(crate) fn new(state: Arc<EdgeState>, listener: ListenerKind, inner: A) -> Self {
        Self {
            state,
            listener,
            inner: Arc::new(inner),
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Gate<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let settings = Settings::from_config(&self.state.runtime().loaded.config, self.listener);
        let _slot = admission::admit(self.listener, settings.max_per_listener).ok()?;
        settings
            .scope(async {
                let mut next = Some(stream);
                while let Some(s) = next {
                    next = self.inner.process_new(s, shutdown).await;
                }
            })
            .await;
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}
