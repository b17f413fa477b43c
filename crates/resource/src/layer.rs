//! The tower layers: [`BearerLayer`] authenticates, [`ScopeLayer`] authorizes one route.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use http::Request;
use tower::{Layer, Service};

use crate::error::{AuthError, Rejection};
use crate::{Caller, ProtectedResource};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pub(crate) fn layer_missing() -> Rejection {
    Rejection::new(
        AuthError::LayerMissing(
            "no verified caller on this request: the route is not wrapped by ProtectedResource::layer()".into(),
        ),
        None,
        Vec::new(),
    )
}

/// See [`ProtectedResource::layer`].
#[derive(Clone, Debug)]
pub struct BearerLayer {
    resource: ProtectedResource,
}

impl BearerLayer {
    pub(crate) fn new(resource: ProtectedResource) -> Self {
        BearerLayer { resource }
    }
}

impl<S> Layer<S> for BearerLayer {
    type Service = BearerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerService {
            inner,
            resource: self.resource.clone(),
        }
    }
}

/// The service [`ProtectedResource::layer`] wraps around yours: verifies the bearer token, then calls yours with the [`Caller`](crate::Caller) in the request's extensions.
#[derive(Clone, Debug)]
pub struct BearerService<S> {
    inner: S,
    resource: ProtectedResource,
}

impl<S, B> Service<Request<B>> for BearerService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone that was not polled ready stays here; the ready one serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let resource = self.resource.clone();
        Box::pin(async move {
            // CORS preflights carry no credentials, so they cannot be checked; a CORS layer
            // outside this one answers them before they get here. One that does get here is
            // answered empty (no Access-Control-* headers: the browser sends nothing more) and
            // never reaches the application, whose OPTIONS or fallback handler would otherwise
            // run unauthenticated.
            if req.method() == http::Method::OPTIONS
                && req
                    .headers()
                    .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
            {
                return Ok(http::StatusCode::NO_CONTENT.into_response());
            }
            match resource.authenticate(req.headers()).await {
                Ok(caller) => {
                    req.extensions_mut().insert(caller);
                    inner.call(req).await
                }
                Err(rejection) => {
                    tracing::debug!(
                        code = rejection.error.code(),
                        "refused: {}",
                        rejection.error.description()
                    );
                    Ok(rejection.into_response())
                }
            }
        })
    }
}

/// See [`ProtectedResource::require_scopes`].
#[derive(Clone, Debug)]
pub struct ScopeLayer {
    scopes: std::sync::Arc<[String]>,
}

impl ScopeLayer {
    pub(crate) fn new(scopes: Vec<String>) -> Self {
        ScopeLayer {
            scopes: scopes.into(),
        }
    }
}

impl<S> Layer<S> for ScopeLayer {
    type Service = ScopeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ScopeService {
            inner,
            scopes: self.scopes.clone(),
        }
    }
}

/// The service of [`ProtectedResource::require_scopes`]: `403 insufficient_scope` unless the caller has the scopes.
#[derive(Clone, Debug)]
pub struct ScopeService<S> {
    inner: S,
    scopes: std::sync::Arc<[String]>,
}

impl<S, B> Service<Request<B>> for ScopeService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let scopes = self.scopes.clone();
        Box::pin(async move {
            let Some(caller) = req.extensions().get::<Caller>() else {
                return Ok(layer_missing().into_response());
            };
            let needed: Vec<&str> = scopes.iter().map(String::as_str).collect();
            if let Err(rejection) = caller.require_scopes(&needed) {
                return Ok(rejection.into_response());
            }
            inner.call(req).await
        })
    }
}
