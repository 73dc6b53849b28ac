//! IMDSv2 through the SDK's client (token PUT, retries, `AWS_EC2_METADATA_SERVICE_ENDPOINT`),
//! with upstream's reading of a 404 on a list path as "empty".

use vpc_cni_cloud::CloudError;

/// The metadata service.
#[derive(Debug, Clone)]
pub struct Imds {
    client: aws_config::imds::Client,
}

impl Default for Imds {
    fn default() -> Self {
        Self::new()
    }
}

impl Imds {
    /// A client honouring the SDK's environment and profile settings.
    pub fn new() -> Self {
        Imds {
            client: aws_config::imds::Client::builder().build(),
        }
    }

    /// A client of the metadata service at `url` (as `AWS_EC2_METADATA_SERVICE_ENDPOINT`).
    pub fn at(url: &str) -> Result<Self, CloudError> {
        Ok(Imds {
            client: aws_config::imds::Client::builder()
                .endpoint(url)
                .map_err(|e| CloudError {
                    code: "InvalidEndpoint".into(),
                    message: format!("IMDS endpoint {url:?}: {e}"),
                })?
                .build(),
        })
    }

    /// `/latest/meta-data/<path>`; `None` on 404.
    pub async fn get(&self, path: &str) -> Result<Option<String>, CloudError> {
        match self.client.get(format!("/latest/meta-data/{path}")).await {
            Ok(v) => Ok(Some(v.as_ref().trim_end().to_string())),
            Err(aws_config::imds::client::error::ImdsError::ErrorResponse(r))
                if r.response().status().as_u16() == 404 =>
            {
                Ok(None)
            }
            Err(e) => Err(CloudError {
                code: "ImdsError".into(),
                message: format!("IMDS {path}: {e}"),
            }),
        }
    }

    /// Like [`Imds::get`], a 404 being an error.
    pub async fn required(&self, path: &str) -> Result<String, CloudError> {
        self.get(path).await?.ok_or_else(|| CloudError {
            code: "ImdsNotFound".into(),
            message: format!("IMDS {path}: not found"),
        })
    }
}
