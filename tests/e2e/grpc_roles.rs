//! Every RPC of every gRPC API is deny-by-default with roles (viewer < billing < admin), checked
//! one table per service. The table is written from what the roles are for (see
//! `billing_runtime::auth::Role` and the proto comments), not copied from the services' access
//! lists, and it must name every RPC the service's proto declares: a new RPC fails this test
//! until someone decides who may call it.
//!
//! For each RPC: no token and an unknown token are `Unauthenticated`; each role below the RPC's
//! is `PermissionDenied`, naming the role; the RPC's role and those above it get past the check
//! (whatever the handler then says about an empty request is not an auth error).

use std::net::SocketAddr;
use std::time::Duration;

use prost::Message as _;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;

use crate::descriptors::FileDescriptorSet;
use crate::harness::{ADMIN_TOKEN, BILLING_TOKEN, System, VIEWER_TOKEN};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Viewer,
    Billing,
    Admin,
}

const ROLES: [(Role, &str, &str); 3] = [
    (Role::Viewer, "viewer", VIEWER_TOKEN),
    (Role::Billing, "billing", BILLING_TOKEN),
    (Role::Admin, "admin", ADMIN_TOKEN),
];

/// Obviously fake, well-formed, and configured nowhere.
const UNKNOWN_TOKEN: &str = "fake-unknown-grpc-token-not-secret-9999";

const LEDGER: &str = "billing.ledger.v1.LedgerService";
const INVOICING: &str = "billing.invoicing.v1.InvoicingService";
const NOTIFIER: &str = "billing.notifier.v1.NotifierService";

/// Who may call each RPC of the ledger.
const LEDGER_ROLES: &[(&str, Role)] = &[
    ("ListBookings", Role::Viewer),
    ("GetBooking", Role::Viewer),
    ("SummarizePeriod", Role::Viewer),
    ("GetBookings", Role::Viewer),
    ("VerifyIntegrity", Role::Viewer),
    ("ListDeadLetters", Role::Viewer),
    ("ListAuditEvents", Role::Viewer),
    // Reconciliation is the month's work; it may put repairs on the stream.
    ("ReconcileSimplyBook", Role::Billing),
    // Publishes events again.
    ("ReplayDeadLetter", Role::Admin),
    // Spends the tenant's SimplyBook quota and can return raw answers.
    ("CheckSimplyBook", Role::Admin),
    // Clients' personal details: the roles that bill see them; only an admin erases a client
    // or re-wraps their keys.
    ("ShowClient", Role::Billing),
    ("EraseClient", Role::Admin),
    ("RewrapClientKeys", Role::Admin),
    // Deposits received (issue 21): imported by billing, read by any.
    ("ImportDeposits", Role::Billing),
    ("GetMonthDeposits", Role::Viewer),
    ("GetBookingDeposits", Role::Viewer),
];

/// Who may call each RPC of invoicing.
const INVOICING_ROLES: &[(&str, Role)] = &[
    ("GetInvoice", Role::Viewer),
    ("ListInvoices", Role::Viewer),
    ("GetTenantProfile", Role::Viewer),
    ("ListTenantProfiles", Role::Viewer),
    ("GenerateMonthlyInvoices", Role::Billing),
    ("RecordPayment", Role::Billing),
    ("VoidInvoice", Role::Billing),
    ("ResendInvoiceEmail", Role::Billing),
    ("SweepOverdue", Role::Billing),
    ("MatchBankTransfers", Role::Billing),
    // The month statement (issue 21): read by any, explained by billing.
    ("GetMonthStatement", Role::Viewer),
    ("ExplainStatementDifference", Role::Billing),
    // Tenant profiles are the admin's.
    ("PutTenantProfile", Role::Admin),
];

/// Who may call each RPC of the notifier: reading only.
const NOTIFIER_ROLES: &[(&str, Role)] = &[
    ("RenderInvoicePdf", Role::Viewer),
    ("ListDeliveries", Role::Viewer),
    ("RenderStatementPdf", Role::Viewer),
    ("ListAlertEmails", Role::Viewer),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_ledger_rpc_needs_its_role() -> anyhow::Result<()> {
    let system = System::start().await?;
    let result = check_roles(system.ledger, LEDGER, LEDGER_ROLES).await;
    system.finish(result).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_invoicing_rpc_needs_its_role() -> anyhow::Result<()> {
    let system = System::start().await?;
    let result = check_roles(system.invoicing, INVOICING, INVOICING_ROLES).await;
    system.finish(result).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_notifier_rpc_needs_its_role() -> anyhow::Result<()> {
    let system = System::start().await?;
    let result = check_roles(system.notifier, NOTIFIER, NOTIFIER_ROLES).await;
    system.finish(result).await
}

async fn check_roles(
    addr: SocketAddr,
    service: &str,
    table: &[(&str, Role)],
) -> anyhow::Result<()> {
    let mut listed: Vec<&str> = table.iter().map(|(method, _)| *method).collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        declared_methods(service)?,
        "the table names every RPC {service} declares, once"
    );

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .timeout(Duration::from_secs(30))
        .connect_lazy();
    // Every mismatch, not just the first: the report shows the whole policy drift.
    let mut wrong = Vec::new();
    for (method, needed) in table {
        let path = format!("/{service}/{method}");
        for (who, token) in [
            ("no token", None),
            ("an unknown token", Some(UNKNOWN_TOKEN)),
        ] {
            let code = call(&channel, &path, token).await?;
            if code != Code::Unauthenticated {
                wrong.push(format!(
                    "{method} with {who}: {code:?}, not Unauthenticated"
                ));
            }
        }
        for (role, name, token) in ROLES {
            let status = call_status(&channel, &path, Some(token)).await?;
            let code = status.as_ref().map_or(Code::Ok, tonic::Status::code);
            if role < *needed {
                let names_role = status
                    .as_ref()
                    .is_some_and(|s| s.message().contains(&format!("role {name}")));
                if code != Code::PermissionDenied || !names_role {
                    wrong.push(format!(
                        "{method} as {name}: {status:?}, not PermissionDenied naming the role"
                    ));
                }
            } else if matches!(code, Code::Unauthenticated | Code::PermissionDenied) {
                wrong.push(format!("{method} as {name}: refused ({status:?})"));
            }
        }
    }
    assert!(wrong.is_empty(), "{service}:\n{}", wrong.join("\n"));
    Ok(())
}

/// The status code of calling `path` with an empty request and `token`.
async fn call(
    channel: &tonic::transport::Channel,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<Code> {
    Ok(call_status(channel, path, token)
        .await?
        .map_or(Code::Ok, |s| s.code()))
}

/// Calls `path` with an empty request (every proto3 message decodes from no bytes) and `token`
/// as a bearer token: `None` when it succeeded, else the status.
async fn call_status(
    channel: &tonic::transport::Channel,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<Option<tonic::Status>> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await?;
    let mut request = tonic::Request::new(Empty {});
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    let path: PathAndQuery = path.parse()?;
    Ok(grpc.unary(request, path, EmptyCodec).await.err())
}

/// The RPCs `service` (full name) declares in the workspace's proto files, sorted.
fn declared_methods(service: &str) -> anyhow::Result<Vec<String>> {
    let set = FileDescriptorSet::decode(billing_proto::FILE_DESCRIPTOR_SET)?;
    let (package, name) = service
        .rsplit_once('.')
        .ok_or_else(|| anyhow::anyhow!("{service} has no package"))?;
    let mut methods: Vec<String> = set
        .file
        .iter()
        .filter(|f| f.package == package)
        .flat_map(|f| &f.service)
        .filter(|s| s.name == name)
        .flat_map(|s| s.method.iter().map(|m| m.name.clone()))
        .collect();
    anyhow::ensure!(!methods.is_empty(), "{service} is not in the descriptors");
    methods.sort_unstable();
    Ok(methods)
}

/// A message with no fields: encodes to nothing, and decodes any answer (skipping its fields).
#[derive(Clone, PartialEq, prost::Message)]
struct Empty {}

/// Sends and receives [`Empty`], so one client can call any unary RPC.
#[derive(Clone, Copy)]
struct EmptyCodec;

struct EmptyEncoder;

struct EmptyDecoder;

impl Codec for EmptyCodec {
    type Encode = Empty;
    type Decode = Empty;
    type Encoder = EmptyEncoder;
    type Decoder = EmptyDecoder;

    fn encoder(&mut self) -> EmptyEncoder {
        EmptyEncoder
    }

    fn decoder(&mut self) -> EmptyDecoder {
        EmptyDecoder
    }
}

impl Encoder for EmptyEncoder {
    type Item = Empty;
    type Error = tonic::Status;

    fn encode(&mut self, item: Empty, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl Decoder for EmptyDecoder {
    type Item = Empty;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Empty>, tonic::Status> {
        Empty::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}
