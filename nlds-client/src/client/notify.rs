//! The caller's notification channels (webhook, email).

use reqwest::Method;

use super::Client;
use crate::error::Result;

impl Client {
    /// The caller's notification channels (with `secret`, the webhook's signing secret too).
    pub async fn notify_show(&self, secret: bool) -> Result<nlds_core::notify::NotifySettings> {
        let query = secret.then_some([("secret", "true")]);
        self.send(Method::GET, "/notify", query.as_ref(), None::<&()>)
            .await
    }

    /// Sets the caller's notification channels; a new webhook's secret is in the answer.
    pub async fn notify_set(
        &self,
        change: &nlds_core::notify::SetNotify,
    ) -> Result<nlds_core::notify::NotifySettings> {
        self.send(Method::PUT, "/notify", None::<&()>, Some(change))
            .await
    }

    /// Removes the caller's notification channels.
    pub async fn notify_clear(&self) -> Result<nlds_core::notify::NotifySettings> {
        self.send(Method::DELETE, "/notify", None::<&()>, None::<&()>)
            .await
    }
}
