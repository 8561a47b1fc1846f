//! Any standard gRPC client can find and check the services: `grpc.health.v1` and server
//! reflection (v1, and v1alpha for grpcio-based tools, older grpcurl and GUI clients) on the same
//! port as the business API, open without a token. Every business call needs a bearer token whose
//! role allows it.

use billing_proto::invoicing::invoicing_service_server::SERVICE_NAME as INVOICING;
use billing_proto::ledger::ledger_service_server::SERVICE_NAME as LEDGER;
use futures::StreamExt;
use prost::Message as _;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1alpha;

use billing_proto::invoicing::invoicing_service_client::InvoicingServiceClient;
use billing_proto::invoicing::{
    GenerateMonthlyInvoicesRequest, ListInvoicesRequest, PutTenantProfileRequest,
};
use billing_proto::ledger::ledger_service_client::LedgerServiceClient;
use billing_proto::ledger::{ListBookingsRequest, ReplayDeadLetterRequest};
use tonic::Code;

use crate::descriptors::FileDescriptor;
use crate::harness::{BILLING_TOKEN, System, VIEWER_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_services_answer_health_checks_and_reflection() -> anyhow::Result<()> {
    // Alone: it reads the RPCs timed on the process's metrics.
    let system = System::builder()
        .ledger()
        .invoicing()
        .alone()
        .start()
        .await?;
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
        for standard in [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            assert!(listed.iter().any(|s| s == standard), "{listed:?}");
        }
    }
    v1alpha_reflection(system).await?;
    // Plain HTTP on the same port still gets a 404 for unknown paths, not a gRPC answer.
    let response = reqwest::get(format!("http://{}/nope", system.ledger)).await?;
    assert_eq!(response.status(), 404);
    roles(system).await
}

/// A client that speaks only `grpc.reflection.v1alpha` lists the services and describes one,
/// and the calls are measured under their real method name while invented paths are not.
async fn v1alpha_reflection(system: &System) -> anyhow::Result<()> {
    use v1alpha::server_reflection_request::MessageRequest;
    use v1alpha::server_reflection_response::MessageResponse;

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", system.ledger))?
        .connect()
        .await?;
    let request = |message| v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    };
    let mut responses = v1alpha::server_reflection_client::ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([
            request(MessageRequest::ListServices(String::new())),
            request(MessageRequest::FileContainingSymbol(LEDGER.into())),
        ]))
        .await?
        .into_inner();

    let listed = match responses.next().await {
        Some(Ok(v1alpha::ServerReflectionResponse {
            message_response: Some(MessageResponse::ListServicesResponse(list)),
            ..
        })) => list.service.into_iter().map(|s| s.name).collect::<Vec<_>>(),
        other => anyhow::bail!("no v1alpha service list: {other:?}"),
    };
    for service in [LEDGER, "grpc.health.v1.Health"] {
        assert!(listed.iter().any(|s| s == service), "{listed:?}");
    }

    let files = match responses.next().await {
        Some(Ok(v1alpha::ServerReflectionResponse {
            message_response: Some(MessageResponse::FileDescriptorResponse(files)),
            ..
        })) => files.file_descriptor_proto,
        other => anyhow::bail!("no v1alpha description of {LEDGER}: {other:?}"),
    };
    let described = files
        .iter()
        .map(|bytes| FileDescriptor::decode(bytes.as_slice()))
        .collect::<Result<Vec<_>, _>>()?;
    let (package, service) = LEDGER.rsplit_once('.').unwrap_or_default();
    let methods: Vec<&str> = described
        .iter()
        .filter(|file| file.package == package)
        .flat_map(|file| &file.service)
        .filter(|s| s.name == service)
        .flat_map(|s| s.method.iter().map(|m| m.name.as_str()))
        .collect();
    for method in ["GetBookings", "ListBookings", "ReplayDeadLetter"] {
        assert!(methods.contains(&method), "{method} in {methods:?}");
    }

    // An invented method of an open service: unimplemented, and it does not become a label.
    let invented = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()?
        .post(format!(
            "http://{}/grpc.reflection.v1alpha.ServerReflection/Invented42",
            system.ledger
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0u8; 5])
        .send()
        .await?;
    assert_eq!(
        invented.headers().get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"12"[..]),
        "{invented:?}"
    );
    let page = system.metrics(system.ledger).await?;
    let reflection = r#"grpc_server_seconds_count{rpc="/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"}"#;
    assert!(
        page.since_start(reflection).is_some_and(|n| n > 0.0),
        "{reflection} in {page}"
    );
    assert!(!page.text().contains("Invented42"), "{page}");
    Ok(())
}

/// A request carrying `token` (or none).
fn with_token<T>(message: T, token: Option<&str>) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    Ok(request)
}

async fn roles(system: &System) -> anyhow::Result<()> {
    let channel = |addr| {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).map(|e| e.connect_lazy())
    };
    let mut ledger = LedgerServiceClient::new(channel(system.ledger)?);
    let mut invoicing = InvoicingServiceClient::new(channel(system.invoicing)?);
    let list = || ListBookingsRequest {
        tenant_id: "claire".into(),
        ..Default::default()
    };

    // No token, a wrong one, another scheme: unauthenticated.
    for token in [None, Some("fake-wrong-grpc-token-not-secret-9999")] {
        let err = ledger
            .list_bookings(with_token(list(), token)?)
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated, "{token:?}: {err}");
    }
    let mut basic = tonic::Request::new(list());
    basic
        .metadata_mut()
        .insert("authorization", format!("Basic {VIEWER_TOKEN}").parse()?);
    let err = ledger.list_bookings(basic).await.expect_err("refused");
    assert_eq!(err.code(), Code::Unauthenticated);

    // A viewer reads, and may not change anything.
    ledger
        .list_bookings(with_token(list(), Some(VIEWER_TOKEN))?)
        .await?;
    invoicing
        .list_invoices(with_token(
            ListInvoicesRequest::default(),
            Some(VIEWER_TOKEN),
        )?)
        .await?;
    let err = invoicing
        .generate_monthly_invoices(with_token(
            GenerateMonthlyInvoicesRequest {
                dry_run: true,
                ..Default::default()
            },
            Some(VIEWER_TOKEN),
        )?)
        .await
        .expect_err("viewer may not close months");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.message().contains("viewer"), "{err}");

    // Billing closes months but neither edits tenants nor replays dead letters.
    invoicing
        .generate_monthly_invoices(with_token(
            GenerateMonthlyInvoicesRequest {
                dry_run: true,
                ..Default::default()
            },
            Some(BILLING_TOKEN),
        )?)
        .await?;
    let err = invoicing
        .put_tenant_profile(with_token(
            PutTenantProfileRequest::default(),
            Some(BILLING_TOKEN),
        )?)
        .await
        .expect_err("billing may not edit profiles");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    let err = ledger
        .replay_dead_letter(with_token(
            ReplayDeadLetterRequest { sequence: 1 },
            Some(BILLING_TOKEN),
        )?)
        .await
        .expect_err("billing may not replay");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");

    // billingctl says what went wrong and exits with EX_NOPERM.
    let out = system
        .billingctl_as(
            VIEWER_TOKEN,
            &[
                "invoices",
                "void",
                "00000000-0000-0000-0000-000000000000",
                "--reason",
                "x",
            ],
        )
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{stderr}");
    assert!(stderr.contains("may not"), "{stderr}");
    Ok(())
}
