//! Transactions: listing them, one's status, retrying and cancelling.

use nlds_core::api::{Accepted, StatQuery, TransactionPage, TransactionStatus};
use reqwest::Method;
use uuid::Uuid;

use super::Client;
use crate::error::Result;

impl Client {
    /// Lists transactions.
    pub async fn stat(&self, query: &StatQuery) -> Result<TransactionPage> {
        self.send(Method::GET, "/transactions", Some(query), None::<&()>)
            .await
    }

    /// Puts the files finished put `transaction_id` failed again, into the same holding, as a
    /// new transaction linked to the first (`retry_of` / `retried_by` in their statuses).
    pub async fn retry(&self, transaction_id: Uuid) -> Result<Accepted> {
        let path = format!("/transactions/{transaction_id}/retry");
        self.send(Method::POST, &path, None::<&()>, None::<&()>)
            .await
    }

    /// Cancels put or get `transaction_id`, which has not ended: it ends CANCELLED once the work
    /// it had in flight has stopped ([`Client::wait`] follows it). `conflict` if it has ended.
    pub async fn cancel(&self, transaction_id: Uuid) -> Result<nlds_core::api::CancelAccepted> {
        let path = format!("/transactions/{transaction_id}/cancel");
        self.send(Method::POST, &path, None::<&()>, None::<&()>)
            .await
    }

    /// One transaction's status; [`Error::Api`] with `not_found` if the server does not know it.
    ///
    /// [`Error::Api`]: crate::error::Error::Api
    pub async fn transaction(&self, transaction_id: Uuid) -> Result<TransactionStatus> {
        let path = format!("/transactions/{transaction_id}");
        self.send(Method::GET, &path, None::<&()>, None::<&()>)
            .await
    }
}
