//! The `kuma.observability.v1.MonitoringAssignmentDiscoveryService` gRPC service.
//!
//! `FetchMonitoringAssignments` behaves like the HTTP endpoint: an empty `version_info` or a
//! different version is answered at once; otherwise the call waits up to 30 s for a change and
//! then answers with the (unchanged) current response. `StreamMonitoringAssignments` sends the
//! client's assignments on its first request and again whenever they change.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use meshmetric_proto::observability::v1::monitoring_assignment_discovery_service_server::{
    MonitoringAssignmentDiscoveryService, MonitoringAssignmentDiscoveryServiceServer,
};

use crate::assign::Assignments;
use crate::http::wait_for_change;
use crate::stats::{Api, Outcome, stats};

/// The gRPC MADS service over the current assignments.
#[derive(Clone)]
pub struct MadsGrpc {
    rx: watch::Receiver<Arc<Assignments>>,
}

impl MadsGrpc {
    /// The tonic service, ready for `Server::add_service`.
    pub fn server(rx: watch::Receiver<Arc<Assignments>>) -> MonitoringAssignmentDiscoveryServiceServer<Self> {
        MonitoringAssignmentDiscoveryServiceServer::new(Self { rx })
    }
}

type RespStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl MonitoringAssignmentDiscoveryService for MadsGrpc {
    type DeltaMonitoringAssignmentsStream = RespStream<DeltaDiscoveryResponse>;
    type StreamMonitoringAssignmentsStream = RespStream<DiscoveryResponse>;

    async fn delta_monitoring_assignments(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaMonitoringAssignmentsStream>, Status> {
        Err(Status::unimplemented(
            "delta MADS is not served; use StreamMonitoringAssignments or Fetch",
        ))
    }

    async fn stream_monitoring_assignments(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamMonitoringAssignmentsStream>, Status> {
        let mut incoming = request.into_inner();
        let (tx, out) = mpsc::channel(4);
        let mut rx = self.rx.clone();
        tokio::spawn(async move {
            let mut client: Option<String> = None;
            let mut sent = String::new();
            loop {
                tokio::select! {
                    msg = incoming.message() => match msg {
                        Ok(Some(req)) => {
                            if client.is_none() {
                                client = Some(req.node.as_ref().map(|n| n.id.clone()).unwrap_or_default());
                            }
                            if let Some(e) = req.error_detail {
                                tracing::warn!(client_id = ?client, error = %e.message, "MADS client rejected assignments");
                            }
                        }
                        _ => return,
                    },
                    changed = rx.changed(), if client.is_some() => if changed.is_err() { return },
                }
                let Some(c) = &client else { continue };
                let view = rx.borrow_and_update().for_client(c).clone();
                if view.version != sent {
                    stats().request(Api::Grpc, Outcome::Ok);
                    sent = view.version.clone();
                    if tx.send(Ok(view.discovery_response())).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    async fn fetch_monitoring_assignments(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let req = request.into_inner();
        let client = req.node.map(|n| n.id).unwrap_or_default();
        let mut rx = self.rx.clone();
        let view = match wait_for_change(&mut rx, &client, &req.version_info, Duration::from_secs(30)).await {
            Some(v) => {
                stats().request(Api::Grpc, Outcome::Ok);
                v
            }
            None => {
                stats().request(Api::Grpc, Outcome::NotModified);
                rx.borrow().for_client(&client).clone()
            }
        };
        Ok(Response::new(view.discovery_response()))
    }
}
