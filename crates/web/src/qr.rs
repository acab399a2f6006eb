//! QR codes as inline SVG, for enrolling authenticator apps.

use qrcode::QrCode;
use qrcode::render::svg;

/// An `<svg>` element (no XML prolog) encoding `text`, or `None` when the
/// text is too long for a QR code.
pub fn svg(text: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    let image = code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    let start = image.find("<svg")?;
    Some(image[start..].to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_an_svg_element() {
        let image = super::svg("otpauth://totp/cloudkeep:ana@example.org?secret=ABC").unwrap();
        assert!(image.starts_with("<svg") && image.trim_end().ends_with("</svg>"));
        assert!(super::svg(&"x".repeat(5000)).is_none());
    }
}
