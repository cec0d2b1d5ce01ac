//! One S3 client set-up: the standard AWS credential chain, with the overrides people need
//! for named profiles and S3-compatible stores.

use aws_config::BehaviorVersion;
use aws_sdk_s3::Client;

/// How to reach S3. Everything unset falls back to the standard chain (environment, shared
/// config and credentials files, SSO, container and instance roles).
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// A profile of the shared AWS config.
    pub profile: Option<String>,
    /// The bucket's region.
    pub region: Option<String>,
    /// An S3-compatible endpoint such as `http://127.0.0.1:9000`.
    pub endpoint_url: Option<String>,
}

/// Builds a client. With an endpoint override, requests use path-style addressing: an
/// S3-compatible store on `localhost` has no per-bucket host names.
pub async fn connect(options: &ClientOptions) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(profile) = &options.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &options.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let shared = loader.load().await;
    let mut config = aws_sdk_s3::config::Builder::from(&shared);
    // The environment's AWS_ENDPOINT_URL is honoured by the loader; both need path style.
    let endpoint = options.endpoint_url.clone().or_else(|| shared.endpoint_url().map(str::to_string));
    if let Some(url) = endpoint {
        config = config.endpoint_url(url).force_path_style(true);
    }
    if shared.region().is_none() && options.region.is_none() {
        config = config.region(aws_config::Region::new("us-east-1"));
    }
    Client::from_conf(config.build())
}
