//! The `granttrail-lambda` binary: the Lambda runtime loop around [`Handler`], with one JSON
//! log line per object and per invocation.
#![forbid(unsafe_code)]

use granttrail_lambda::{Env, Handler};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time()
        .init();
    let env = Env::from_vars(|name| std::env::var(name).ok())?;
    let handler = Handler::new(env).await?;
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handler.handle(event.payload).await
    }))
    .await
}
