//! Example actions: structures, objects that live elsewhere and travel as references (on
//! their own, and inside lists, dicts and models).

use std::collections::BTreeMap;

use rekuest_guest::prelude::*;

/// An image in mikro, referenced as `image:<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Image {
    id: u64,
}

impl Structure for Image {
    const IDENTIFIER: &'static str = "@mikro/image";

    fn shrink(&self) -> String {
        format!("image:{}", self.id)
    }

    fn expand(reference: &str) -> Result<Self, String> {
        let id = reference
            .strip_prefix("image:")
            .ok_or_else(|| "an image reference starts with \"image:\"".to_owned())?;
        let id = id
            .parse()
            .map_err(|_| format!("{id:?} is not an image id (a number)"))?;
        Ok(Image { id })
    }
}

/// Describe an image.
///
/// * `image` - the image to describe
#[register]
fn describe_image(image: Image) -> String {
    format!("image {} in mikro", image.id)
}

/// Crop an image to a width.
///
/// The cropped copy is a new image with id `<id><width>` (the width padded to three digits).
///
/// * `image` - the image to crop
/// * `width` - the width in pixels, 1 to 999
///
/// # Returns
///
/// The cropped copy.
#[register]
fn crop(image: Image, width: i64) -> Result<Image, String> {
    let width = u64::try_from(width)
        .ok()
        .filter(|width| (1..1000).contains(width))
        .ok_or_else(|| format!("width must be between 1 and 999, got {width}"))?;
    let id = image
        .id
        .checked_mul(1000)
        .and_then(|id| id.checked_add(width))
        .ok_or_else(|| format!("image {} is too large an id to crop", image.id))?;
    Ok(Image { id })
}

/// List the first images.
///
/// * `n` - how many images to list
#[register]
fn images(n: u32) -> Vec<Image> {
    (1..=u64::from(n)).map(|id| Image { id }).collect()
}

/// The image with the highest id, if any.
///
/// * `images` - the images to choose from
#[register]
fn newest(images: Vec<Image>) -> Option<Image> {
    images.into_iter().max_by_key(|image| image.id)
}

/// An image with a label.
#[derive(Model)]
struct Labelled {
    /// The image.
    image: Image,
    /// Its label.
    label: String,
}

/// Label images with their names.
///
/// * `images` - the images by name
///
/// # Returns
///
/// The images labelled with their names, sorted by name.
#[register]
fn label(images: BTreeMap<String, Image>) -> Vec<Labelled> {
    images
        .into_iter()
        .map(|(label, image)| Labelled { image, label })
        .collect()
}

/// Look up labelled images by their labels.
///
/// * `labelled` - the labelled images
///
/// # Returns
///
/// The images by label (the last one wins when labels repeat).
#[register]
fn by_label(labelled: Vec<Labelled>) -> BTreeMap<String, Image> {
    labelled
        .into_iter()
        .map(|Labelled { image, label }| (label, image))
        .collect()
}

rekuest_guest::export_actions!(describe_image, crop, images, newest, label, by_label);
