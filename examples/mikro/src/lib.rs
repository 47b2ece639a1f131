//! Example actions on images that live in a mikro-like HTTP service: the structure's `expand`
//! loads the image's metadata from the service, an action loads its pixels and uploads a
//! result, returning the new image's reference.
//!
//! The service's base URL comes from the environment variable `MIKRO_URL`; grant it and the
//! origin, e.g. `rekuest-host call mikro.wasm image_name image=7 --env MIKRO_URL=http://127.0.0.1:8080
//! --http http://127.0.0.1:8080` (`--http-service` to send the agent's and the task's tokens).
//!
//! The service: `GET /api/images/<id>` answers `{"id": "7", "name": "...", "width": 4,
//! "height": 2}`, `GET /api/images/<id>/data` the pixels (one byte each, row by row), and
//! `POST /api/images?name=...&width=..&height=..` with the pixels as body creates an image,
//! answering its metadata.

use rekuest_guest::http;
use rekuest_guest::prelude::*;
use serde::Deserialize;

/// An image in mikro, referenced by its id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Image {
    id: String,
    name: String,
    width: u32,
    height: u32,
}

/// The service's base URL, without a trailing slash.
fn mikro_url() -> Result<String, String> {
    let url = std::env::var("MIKRO_URL")
        .map_err(|_| "MIKRO_URL is not set: grant it with --env MIKRO_URL=<base URL>")?;
    Ok(url.trim_end_matches('/').to_string())
}

/// Whether `id` is safe to put into a URL path.
fn check_id(id: &str) -> Result<&str, String> {
    let valid = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        Ok(id)
    } else {
        Err(format!(
            "{id:?} is not an image id (letters, digits and '-')"
        ))
    }
}

impl Structure for Image {
    const IDENTIFIER: &'static str = "@mikro/image";

    fn shrink(&self) -> String {
        self.id.clone()
    }

    fn expand(reference: &str) -> Result<Self, String> {
        let id = check_id(reference)?;
        http::get(format!("{}/api/images/{id}", mikro_url()?))
            .json()
            .map_err(|error| error.to_string())
    }
}

/// Name an image.
///
/// * `image` - the image
///
/// # Returns
///
/// Its name and size, e.g. `cells (4x2)`.
#[register]
fn image_name(image: Image) -> String {
    format!("{} ({}x{})", image.name, image.width, image.height)
}

/// Threshold an image: pixels at or above `level` become 255, the others 0.
///
/// The result is uploaded to mikro as a new image.
///
/// * `image` - the image
/// * `level` - the threshold, 0 to 255
///
/// # Returns
///
/// The thresholded copy.
#[register]
fn threshold(image: Image, level: i64) -> Result<Image, String> {
    let level = u8::try_from(level).map_err(|_| format!("level must be 0 to 255, got {level}"))?;
    let base = mikro_url()?;
    let pixels = http::get(format!("{base}/api/images/{}/data", image.id))
        .bytes()
        .map_err(|error| error.to_string())?;
    let expected = u64::from(image.width) * u64::from(image.height);
    if pixels.len() as u64 != expected {
        return Err(format!(
            "image {} has {} pixels, expected {expected}",
            image.id,
            pixels.len()
        ));
    }
    let result: Vec<u8> = pixels
        .iter()
        .map(|&pixel| if pixel >= level { 255 } else { 0 })
        .collect();
    let name: String = format!("{} thresholded at {level}", image.name)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    http::post(format!(
        "{base}/api/images?name={name}&width={}&height={}",
        image.width, image.height
    ))
    .header("content-type", "application/octet-stream")
    .body(result)
    .json()
    .map_err(|error| error.to_string())
}

export_actions!(image_name, threshold);
