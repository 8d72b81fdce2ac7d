//! The transport floor: okey's gRPC stack (tonic, the same codec and connection settings as
//! `okey serve`) answering Verify without doing any of okey's work: no caller check, no store,
//! no code check, no commit. `okey bench --floor` sends the same load to it as to okey, so a run
//! measures on the same machine, at the same moment, how fast the transport alone can go and
//! how much of that okey keeps.
//!
//! It accepts every passcode, so it only ever listens on loopback and only inside the bench.

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::proto;
use crate::serve::{ServeError, bind, server_builder};
use crate::service::verify_response;
use okey_store::{Reason, VerifyOutcome};

/// A running transport floor.
pub struct FloorServer {
    /// The loopback address it listens on.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl FloorServer {
    /// Listen on a free loopback port.
    pub async fn start() -> Result<FloorServer, ServeError> {
        let (listener, addr) = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let (tx, rx) = oneshot::channel::<()>();
        let router = server_builder()
            .add_service(proto::auth_service_server::AuthServiceServer::new(NoWork));
        let task = tokio::spawn(router.serve_with_incoming_shutdown(
            TcpListenerStream::new(listener),
            async {
                let _ = rx.await;
            },
        ));
        Ok(FloorServer {
            addr,
            shutdown: Some(tx),
            task,
        })
    }

    /// Stop and wait.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result.map_err(ServeError::from),
            Err(_) => Ok(()),
        }
    }
}

/// Verify that answers what okey answers to a good code (same fields, same sizes) and checks
/// nothing.
struct NoWork;

#[tonic::async_trait]
impl proto::auth_service_server::AuthService for NoWork {
    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        let serial = match request.into_inner().subject.and_then(|s| s.kind) {
            Some(proto::subject::Kind::Serial(s) | proto::subject::Kind::User(s)) => s,
            None => String::new(),
        };
        Ok(Response::new(verify_response(&VerifyOutcome {
            accepted: true,
            serial: Some(serial),
            reason: Reason::Accepted,
        })))
    }

    async fn trigger_challenge(
        &self,
        _request: Request<proto::TriggerChallengeRequest>,
    ) -> Result<Response<proto::TriggerChallengeResponse>, Status> {
        Err(Status::unimplemented(
            "the transport floor only answers Verify",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the floor sends back is built by the function okey answers a good code with.
    #[test]
    fn the_floor_answers_what_okey_answers_to_a_good_code() {
        let okey = verify_response(&VerifyOutcome {
            accepted: true,
            serial: Some("B0000000001".into()),
            reason: Reason::Accepted,
        });
        assert_eq!(okey.result, proto::VerifyResult::Accept as i32);
        assert_eq!(okey.serial, "B0000000001");
        assert_eq!(okey.reason, "accepted");
        assert_eq!(okey.reply_message, "Access granted");
    }
}
