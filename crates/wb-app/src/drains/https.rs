//! HTTPS drain: each batch is POSTed as a JSON array of `DrainRecord`s; any
//! 2xx status means delivered, anything else (or no answer) means retry.

use std::sync::Arc;

use async_trait::async_trait;
use wb_store::CentralEvent;

use super::{error_chain, Drain, DrainError, DrainRecord, CONNECT_TIMEOUT, SEND_TIMEOUT};

pub struct HttpsDrain {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl HttpsDrain {
    /// `tls` is the verifying client configuration (see `tls_client_config`).
    pub fn new(
        url: reqwest::Url,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<HttpsDrain, DrainError> {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(SEND_TIMEOUT)
            .user_agent(concat!(
                "workbooks/",
                env!("CARGO_PKG_VERSION"),
                " audit-drain"
            ))
            .build()
            .map_err(|e| DrainError::Http(error_chain(&e)))?;
        Ok(HttpsDrain { client, url })
    }
}

#[async_trait]
impl Drain for HttpsDrain {
    async fn send(&mut self, events: &[CentralEvent]) -> Result<(), DrainError> {
        if events.is_empty() {
            return Ok(());
        }
        let records: Vec<DrainRecord> = events.iter().map(DrainRecord::from).collect();
        let body = serde_json::to_vec(&records).map_err(|e| DrainError::Http(e.to_string()))?;
        let response = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            // Without the URL: it may carry a token.
            .map_err(|e| DrainError::Http(error_chain(&e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(DrainError::Http(format!(
                "the collector answered {status}; the batch will be sent again"
            )))
        }
    }
}
