//! The HTTP surface: routes, handlers and the per-request bookkeeping middleware.
//!
//! Handlers parse with `request`, act through the `Store` trait and answer with `response`
//! or `error`; nothing here depends on which store is behind it, which is what makes the
//! two implementations answer byte-identically. Ids cross the edge here: a handler reads the
//! client's ids and shows the store's in the bank's id space (`ids`), which it holds for the
//! whole request, so that an import that changes the space is never seen halfway.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::sync::{RwLock, RwLockReadGuard};

use crate::account::AccountId;
use crate::error::ApiError;
use crate::faults::Faults;
use crate::ids::IdSpace;
use crate::request::{self, NamedTransfer, TransferOrder};
use crate::response::{AccountView, TransferView, json};
use crate::store::{Store, StoreError};

/// Everything a handler can reach.
struct Bank {
    store: Arc<dyn Store>,
    /// The store's id space; read-locked by every request, write-locked by an import.
    ids: RwLock<IdSpace>,
    faults: Faults,
    requests: AtomicU64,
    writes: AtomicU64,
    /// Names this process: a restarted instance answers another (`X-Boot-Id` on the health
    /// check's answer, for the gateway's `[health] identity_header`).
    boot_id: axum::http::HeaderValue,
}

/// A value that differs between two starts of the service.
fn new_boot_id() -> axum::http::HeaderValue {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!("{:x}-{:x}", std::process::id(), nanos);
    axum::http::HeaderValue::from_str(&id).expect("hex digits and a dash")
}

type Shared = State<Arc<Bank>>;

impl Bank {
    /// The id space, held until the request is answered.
    async fn ids(&self) -> RwLockReadGuard<'_, IdSpace> {
        self.ids.read().await
    }

    /// Runs one store operation, off the async workers when the store may block on disk.
    async fn run<T, F>(&self, op: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        if !self.store.blocks() {
            return Ok(op(self.store.as_ref())?);
        }
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || op(store.as_ref()))
            .await
            .map_err(|_| ApiError::Interrupted)?
            .map_err(ApiError::from)
    }

    /// Like `run`, for operations that change state: counts them once they succeeded.
    async fn write<T, F>(&self, op: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        let value = self.run(op).await?;
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(value)
    }
}

/// The demo's router over `store`, with no faults injected.
pub fn app(store: Arc<dyn Store>) -> Router {
    app_with(store, Faults::default())
}

/// The demo's router over `store`, misbehaving as `faults` says.
pub fn app_with(store: Arc<dyn Store>, faults: Faults) -> Router {
    let ids = RwLock::new(IdSpace::of(store.id_key()));
    let bank = Arc::new(Bank {
        store,
        ids,
        faults,
        requests: AtomicU64::new(0),
        writes: AtomicU64::new(0),
        boot_id: new_boot_id(),
    });
    Router::new()
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/accounts", get(list_accounts).post(open_account))
        .route("/accounts/{id}", get(show_account).delete(close_account))
        .route("/accounts/{id}/deposit", post(deposit))
        .route("/accounts/{id}/withdraw", post(withdraw))
        .route("/transfers", post(transfer))
        .route("/admin/reset", post(reset))
        .route("/admin/export", get(export))
        .route("/admin/import", post(import))
        .fallback(no_route)
        // axum adds the `allow` header to whatever this returns.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&bank),
            bookkeeping,
        ))
        .with_state(bank)
}

/// Counts every request and, for state-changing methods, applies the configured delay.
async fn bookkeeping(State(bank): Shared, req: Request, next: Next) -> Response {
    let n = bank.requests.fetch_add(1, Ordering::SeqCst);
    let writes = matches!(*req.method(), Method::POST | Method::DELETE);
    let delay = bank.faults.delay;
    if !delay.is_zero() && writes {
        tokio::time::sleep(delay).await;
    }
    if writes && !req.uri().path().starts_with("/admin/") {
        if let Some(status) = bank.faults.shed(n) {
            let status = StatusCode::from_u16(status).expect("503 and 429 are statuses");
            let mut answer = json(
                status,
                &serde_json::json!({ "error": "overloaded, try again" }),
            );
            answer
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("0"));
            return answer;
        }
    }
    let health = req.uri().path() == "/health";
    let mut answer = next.run(req).await;
    if health {
        answer
            .headers_mut()
            .insert("x-boot-id", bank.boot_id.clone());
    }
    answer
}

type Answer = Result<Response, ApiError>;

fn ok(value: &impl Serialize) -> Answer {
    Ok(json(StatusCode::OK, value))
}

/// The answer to a handler's result, its error worded for the id space `ids`.
fn answer(ids: &IdSpace, result: Answer) -> Response {
    result.unwrap_or_else(|e| e.respond(ids))
}

/// The account id in the path. A segment that is not an id names no account: 404.
fn account_id(
    ids: &IdSpace,
    path: Result<Path<String>, PathRejection>,
) -> Result<AccountId, ApiError> {
    let Path(segment) = path.map_err(|_| ApiError::UndecodablePath)?;
    ids.parse(&segment).ok_or(ApiError::NoSuchAccount(segment))
}

/// The raw body; axum's own rejections are plain text, so they are rewrapped as JSON.
fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge
        } else {
            ApiError::UnreadableBody(rejection.body_text())
        }
    })
}

async fn health() -> Response {
    #[derive(Serialize)]
    struct Health {
        status: &'static str,
    }
    json(StatusCode::OK, &Health { status: "ok" })
}

async fn stats(State(bank): Shared) -> Response {
    #[derive(Serialize)]
    struct Stats {
        requests: u64,
        writes: u64,
    }
    json(
        StatusCode::OK,
        &Stats {
            requests: bank.requests.load(Ordering::SeqCst),
            writes: bank.writes.load(Ordering::SeqCst),
        },
    )
}

async fn list_accounts(State(bank): Shared) -> Response {
    let ids = bank.ids().await;
    let result = async {
        let accounts = bank.run(|store| store.accounts()).await?;
        ok(&AccountView::all(&ids, &accounts))
    };
    answer(&ids, result.await)
}

async fn open_account(State(bank): Shared, raw: Result<Bytes, BytesRejection>) -> Response {
    let ids = bank.ids().await;
    let result = async {
        let owner = request::parse_new_account(&body(raw)?)?;
        let account = bank.write(move |store| store.open_account(&owner)).await?;
        Ok(json(StatusCode::CREATED, &AccountView::new(&ids, &account)))
    };
    answer(&ids, result.await)
}

async fn show_account(State(bank): Shared, id: Result<Path<String>, PathRejection>) -> Response {
    let ids = bank.ids().await;
    let result = async {
        let id = account_id(&ids, id)?;
        let account = bank.run(move |store| store.account(id)).await?;
        ok(&AccountView::new(&ids, &account))
    };
    answer(&ids, result.await)
}

async fn close_account(State(bank): Shared, id: Result<Path<String>, PathRejection>) -> Response {
    let ids = bank.ids().await;
    let result = async {
        let id = account_id(&ids, id)?;
        bank.write(move |store| store.close_account(id)).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    answer(&ids, result.await)
}

async fn deposit(
    State(bank): Shared,
    id: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let ids = bank.ids().await;
    let result = async {
        let id = account_id(&ids, id)?;
        let amount = request::parse_amount(&body(raw)?)?;
        let amount = bank
            .faults
            .deposit_amount(amount, bank.writes.load(Ordering::SeqCst));
        let account = bank.write(move |store| store.deposit(id, amount)).await?;
        ok(&AccountView::new(&ids, &account))
    };
    answer(&ids, result.await)
}

async fn withdraw(
    State(bank): Shared,
    id: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let ids = bank.ids().await;
    let result = async {
        let id = account_id(&ids, id)?;
        let amount = request::parse_amount(&body(raw)?)?;
        let account = bank.write(move |store| store.withdraw(id, amount)).await?;
        ok(&AccountView::new(&ids, &account))
    };
    answer(&ids, result.await)
}

async fn transfer(State(bank): Shared, raw: Result<Bytes, BytesRejection>) -> Response {
    let ids = bank.ids().await;
    let result = async {
        let raw = body(raw)?;
        let order = match *ids {
            IdSpace::Sequential => request::parse_transfer(&raw)?,
            IdSpace::Random(_) => {
                let named = request::parse_named_transfer(&raw)?;
                resolve_transfer(&bank, &ids, named).await?
            }
        };
        let transfer = bank.write(move |store| store.transfer(order)).await?;
        ok(&TransferView::new(&ids, &transfer))
    };
    answer(&ids, result.await)
}

/// The order a transfer with random ids stands for. Text that names no account is refused
/// like an account that does not exist, in the same order: `from` first, then `to`.
async fn resolve_transfer(
    bank: &Bank,
    ids: &IdSpace,
    named: NamedTransfer,
) -> Result<TransferOrder, ApiError> {
    let NamedTransfer { from, to, amount } = named;
    let Some(from) = ids.parse(&from) else {
        return Err(ApiError::NoSuchAccount(from));
    };
    let Some(to) = ids.parse(&to) else {
        // Had `to` been an id, the store would have refused a missing `from` first.
        bank.run(move |store| store.account(from)).await?;
        return Err(ApiError::NoSuchAccount(to));
    };
    Ok(TransferOrder { from, to, amount })
}

/// Empties the bank; used by lockstep's reset hook before it replays the journal. The id
/// space stays.
async fn reset(State(bank): Shared) -> Response {
    let ids = bank.ids().await;
    let result = async {
        bank.write(|store| store.reset()).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    answer(&ids, result.await)
}

/// The whole state, for lockstep's checkpoint export hook: the stores' numbers, and the key
/// that shows them as this bank's ids when they are random.
async fn export(State(bank): Shared) -> Response {
    let ids = bank.ids().await;
    let result = async { ok(&bank.run(|store| store.export()).await?) };
    answer(&ids, result.await)
}

/// Replaces the whole state with a snapshot, for lockstep's checkpoint import hook; with
/// random ids the bank adopts the snapshot's id space, so it shows the ids its source showed.
async fn import(State(bank): Shared, raw: Result<Bytes, BytesRejection>) -> Response {
    // Exclusive: no request runs while the state and the id space change together.
    let mut ids = bank.ids.write().await;
    let result = async {
        let snapshot = request::parse_snapshot(&body(raw)?)?;
        let key = snapshot.id_key;
        bank.write(move |store| store.import(snapshot)).await?;
        Ok::<_, ApiError>(key)
    };
    match result.await {
        Ok(key) => {
            *ids = IdSpace::of(key);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => e.respond(&ids),
    }
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoRoute {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}
