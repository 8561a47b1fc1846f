//! Any standard gRPC client can find and check the services: `grpc.health.v1` and server
//! reflection on the same port as the business API.

use billing_proto::invoicing::invoicing_service_server::SERVICE_NAME as INVOICING;
use billing_proto::ledger::ledger_service_server::SERVICE_NAME as LEDGER;
use futures::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::harness::System;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_services_answer_health_checks_and_reflection() -> anyhow::Result<()> {
    let system = System::start().await?;
    let result = scenario(&system).await;
    system.finish(result).await
}

async fn scenario(system: &System) -> anyhow::Result<()> {
    for (addr, service) in [(system.ledger, LEDGER), (system.invoicing, INVOICING)] {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let status = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service}");

        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = ServerReflectionClient::new(channel)
            .server_reflection_info(futures::stream::iter([request]))
            .await?
            .into_inner();
        let listed = match responses.next().await {
            Some(Ok(r)) => match r.message_response {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
                }
                other => anyhow::bail!("unexpected reflection answer {other:?}"),
            },
            other => anyhow::bail!("no reflection answer: {other:?}"),
        };
        assert!(listed.iter().any(|s| s == service), "{listed:?}");
        assert!(
            listed.iter().any(|s| s == "grpc.health.v1.Health"),
            "{listed:?}"
        );
    }
    // Plain HTTP on the same port still gets a 404 for unknown paths, not a gRPC answer.
    let response = reqwest::get(format!("http://{}/nope", system.ledger)).await?;
    assert_eq!(response.status(), 404);
    Ok(())
}
