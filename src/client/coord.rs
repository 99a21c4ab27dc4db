//! Client calls for coordination: leases, locks and elections (docs/api.md, Leases, Locks,
//! Elections). Which of them may be re-sent to another endpoint after an ambiguous failure
//! follows the server's rules: a keepalive is harmless twice, and so is taking a lock or
//! campaigning again with the same lease (the server keeps its first place and token), so those
//! fail over like reads. A grant, a release, a resign and a revoke do not.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::error::ClientError;
use super::response::Effect;
use super::transport::{segs, Call, Client};
use super::types::Reply;

impl Client {
    /// `POST /leases`.
    pub async fn lease_grant(&self, ttl_seconds: u64) -> Result<Reply<Value>, ClientError> {
        let call = Call::new(Method::POST, Effect::Write, segs(&["leases"])).body(json!({"ttlSeconds": ttl_seconds}));
        self.execute(&call).await
    }

    /// `POST /leases/{id}/keepalive`.
    pub async fn lease_keepalive(&self, id: &str) -> Result<Reply<Value>, ClientError> {
        self.execute(&Call::new(Method::POST, Effect::Read, segs(&["leases", id, "keepalive"]))).await
    }

    /// `DELETE /leases/{id}`.
    pub async fn lease_revoke(&self, id: &str) -> Result<Reply<Value>, ClientError> {
        self.execute(&Call::new(Method::DELETE, Effect::Write, segs(&["leases", id]))).await
    }

    /// `POST /locks/{name}`: held, or 409 `lock_held` once `wait` ran out.
    pub async fn lock(&self, name: &str, lease: &str, wait: Duration) -> Result<Reply<Value>, ClientError> {
        let call = Call::new(Method::POST, Effect::Read, segs(&["locks", name]))
            .body(json!({"lease": lease, "wait": format!("{}ms", wait.as_millis())}))
            .timeout(self.request_timeout + wait);
        self.execute(&call).await
    }

    /// `DELETE /locks/{name}/{token}`.
    pub async fn unlock(&self, name: &str, token: &str) -> Result<Reply<Value>, ClientError> {
        self.execute(&Call::new(Method::DELETE, Effect::Write, segs(&["locks", name, token]))).await
    }

    /// `POST /elections/{name}/campaign`: leads, or 409 `not_elected` once `wait` ran out.
    pub async fn campaign(
        &self,
        name: &str,
        lease: &str,
        value: &Value,
        wait: Duration,
    ) -> Result<Reply<Value>, ClientError> {
        let call = Call::new(Method::POST, Effect::Read, segs(&["elections", name, "campaign"]))
            .body(json!({"lease": lease, "value": value, "wait": format!("{}ms", wait.as_millis())}))
            .timeout(self.request_timeout + wait);
        self.execute(&call).await
    }

    /// `DELETE /elections/{name}/resign?token=`.
    pub async fn resign(&self, name: &str, token: &str) -> Result<Reply<Value>, ClientError> {
        let mut call = Call::new(Method::DELETE, Effect::Write, segs(&["elections", name, "resign"]));
        call.query.push(("token", token.to_string()));
        self.execute(&call).await
    }
}
