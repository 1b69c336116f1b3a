//! The supervisor's HTTP API as the experiments use it.

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A supervisor's API at `addr` with the admin token.
#[derive(Clone)]
pub(crate) struct Api {
    base: String,
    token: String,
}

impl Api {
    /// The API of the supervisor at `addr`.
    pub(crate) fn new(addr: &str, token: &str) -> Self {
        Self {
            base: format!("http://{addr}"),
            token: token.to_string(),
        }
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        ureq::get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .with_context(|| format!("GET {path}"))?
            .body_mut()
            .read_json()
            .with_context(|| format!("GET {path}: unexpected answer"))
    }

    /// The stream's tree: `(id, parent, depth)`.
    pub(crate) fn tree(&self, stream: &str) -> Vec<(String, Option<String>, u64)> {
        let Ok(v) = self.get::<Value>(&format!("/api/streams/{stream}/tree")) else {
            return Vec::new();
        };
        v["nodes"]
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .map(|n| {
                        (
                            n["id"].as_str().unwrap_or_default().to_string(),
                            n["parent"].as_str().map(str::to_string),
                            n["depth"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every node's latest stats: `(id, parent, depth, stats)`.
    pub(crate) fn stats(&self, stream: &str) -> Vec<Value> {
        self.get::<Vec<Value>>(&format!("/api/streams/{stream}/stats"))
            .unwrap_or_default()
    }

    /// Starts a failure run; returns its id.
    pub(crate) fn start_run(&self, stream: &str, body: &Value) -> anyhow::Result<u64> {
        let path = format!("/api/streams/{stream}/failures");
        let answer: Value = ureq::post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .send_json(body)
            .with_context(|| format!("POST {path}"))?
            .body_mut()
            .read_json()?;
        answer["id"].as_u64().context("no run id in the answer")
    }

    /// Every run of the stream.
    pub(crate) fn runs(&self, stream: &str) -> anyhow::Result<Vec<Value>> {
        self.get(&format!("/api/streams/{stream}/runs"))
    }
}
