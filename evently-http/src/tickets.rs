//! Ticket artefacts: the QR code of a ticket (SVG and PNG) and a one-page PDF ticket.
//!
//! The QR code encodes [`Ticket::qr_payload`] (`evently:v1:<event id>:<booking id>:<ticket number>`) in
//! byte mode at error-correction level M, with the standard four-module quiet zone. The PDF is an A4
//! page drawn with the PDF base font Helvetica (no font is embedded) and the QR code as vector squares,
//! so it stays small (about 7 KB) and sharp at any zoom.
//!
//! ```
//! use evently_http::tickets::{qr_png, qr_svg};
//!
//! let png = qr_png("evently:v1:example", 4)?;
//! assert!(png.starts_with(b"\x89PNG"));
//! let svg = qr_svg("evently:v1:example")?;
//! assert!(svg.contains("<svg"));
//! # Ok::<(), evently_http::tickets::TicketRenderError>(())
//! ```

use std::io::Cursor;

use chrono::{DateTime, Utc};
use evently_core::Ticket;
use image::{ImageFormat, Luma};
use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use qrcode::{Color, EcLevel, QrCode};

/// Largest PNG module size accepted by [`qr_png`], in pixels.
pub const MAX_MODULE_PX: u32 = 64;

/// Why a ticket artefact could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TicketRenderError {
    /// The payload does not fit in a QR code (more than 2,331 bytes at level M).
    #[error("the QR payload ({len} bytes) cannot be encoded: {reason}")]
    QrPayload {
        /// Payload length in bytes.
        len: usize,
        /// What the encoder said.
        reason: String,
    },
    /// The PNG module size is out of range.
    #[error("QR module size {px} px is out of range (1 to {MAX_MODULE_PX})")]
    ModuleSize {
        /// The size asked for.
        px: u32,
    },
    /// PNG encoding failed.
    #[error("PNG encoding failed: {0}")]
    Png(#[from] image::ImageError),
}

/// The QR code of `payload` (byte mode, error correction level M).
pub fn qr_code(payload: &str) -> Result<QrCode, TicketRenderError> {
    QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::M).map_err(|e| {
        TicketRenderError::QrPayload {
            len: payload.len(),
            reason: e.to_string(),
        }
    })
}

/// The QR code of `payload` as a standalone SVG document: one unit per module, a four-module quiet
/// zone, a white background rectangle and one black path holding every dark module.
pub fn qr_svg(payload: &str) -> Result<String, TicketRenderError> {
    let code = qr_code(payload)?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .quiet_zone(true)
        .module_dimensions(1, 1)
        .build())
}

/// The QR code of `payload` as a grayscale PNG, each module `module_px` pixels square (1 to
/// [`MAX_MODULE_PX`]), with a four-module quiet zone.
pub fn qr_png(payload: &str, module_px: u32) -> Result<Vec<u8>, TicketRenderError> {
    if !(1..=MAX_MODULE_PX).contains(&module_px) {
        return Err(TicketRenderError::ModuleSize { px: module_px });
    }
    let code = qr_code(payload)?;
    let img = code
        .render::<Luma<u8>>()
        .quiet_zone(true)
        .module_dimensions(module_px, module_px)
        .build();
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// What is printed on a PDF ticket besides the ticket itself.
#[derive(Debug, Clone, Copy)]
pub struct TicketSheet<'a> {
    /// The ticket.
    pub ticket: &'a Ticket,
    /// Event name.
    pub event_name: &'a str,
    /// Venue.
    pub venue: &'a str,
    /// Event start.
    pub starts_at: DateTime<Utc>,
    /// The ticket holder's name.
    pub holder: &'a str,
}

/// A4 in PDF points.
const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
/// Side of the printed QR code, quiet zone included, in points (about 7.4 cm).
const QR_SIDE: f32 = 210.0;

/// A one-page A4 PDF ticket: event, venue, start time (UTC), holder, ticket number, issue time and the
/// QR code. Text outside Latin-1 is printed with `?` in its place (the base fonts have no other glyphs);
/// the ticket number and payload are ASCII, so they are always exact. The page's text is written
/// uncompressed, so the ticket number appears verbatim in the file.
pub fn ticket_pdf(sheet: &TicketSheet<'_>) -> Result<Vec<u8>, TicketRenderError> {
    tickets_pdf(std::slice::from_ref(sheet))
}

/// One PDF with a page per ticket, each page as [`ticket_pdf`] draws it (a booking's tickets in one
/// file). The fonts are shared, so each further page adds only its drawing.
pub fn tickets_pdf(sheets: &[TicketSheet<'_>]) -> Result<Vec<u8>, TicketRenderError> {
    let codes = sheets
        .iter()
        .map(|s| qr_code(&s.ticket.qr_payload))
        .collect::<Result<Vec<_>, _>>()?;

    let catalog_id = Ref::new(1);
    let page_tree_id = Ref::new(2);
    let regular_id = Ref::new(3);
    let bold_id = Ref::new(4);
    let info_id = Ref::new(5);
    // Page i is object 6 + 2i, its content 7 + 2i.
    let page_ids: Vec<Ref> = (0..sheets.len())
        .map(|i| Ref::new(6 + 2 * i32::try_from(i).unwrap_or(i32::MAX / 4)))
        .collect();
    let regular = Name(b"F1");
    let bold = Name(b"F2");

    let mut pdf = Pdf::new();
    pdf.catalog(catalog_id).pages(page_tree_id);
    pdf.pages(page_tree_id)
        .kids(page_ids.iter().copied())
        .count(i32::try_from(page_ids.len()).unwrap_or(i32::MAX));
    pdf.type1_font(regular_id)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold_id)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    let title = match sheets {
        [one] => format!("Ticket {}", one.ticket.number),
        _ => format!("{} tickets", sheets.len()),
    };
    pdf.document_info(info_id)
        .title(TextStr(&title))
        .producer(TextStr("Evently"));

    for ((sheet, code), &page_id) in sheets.iter().zip(&codes).zip(&page_ids) {
        let content_id = Ref::new(page_id.get() + 1);
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        page.parent(page_tree_id);
        page.contents(content_id);
        let mut resources = page.resources();
        let mut fonts = resources.fonts();
        fonts.pair(regular, regular_id);
        fonts.pair(bold, bold_id);
        fonts.finish();
        resources.finish();
        page.finish();
        let stream = draw_ticket(sheet, code, regular, bold);
        pdf.stream(content_id, &stream);
    }
    Ok(pdf.finish())
}

/// The drawing of one ticket page.
fn draw_ticket(
    sheet: &TicketSheet<'_>,
    code: &QrCode,
    regular: Name<'_>,
    bold: Name<'_>,
) -> pdf_writer::Buf {
    let mut content = Content::new();
    let left = 56.0;
    let line = |content: &mut Content, font: Name<'_>, size: f32, y: f32, text: &str| {
        let bytes = win_ansi(text);
        content
            .begin_text()
            .set_font(font, size)
            .next_line(left, y)
            .show(Str(&bytes))
            .end_text();
    };
    line(&mut content, bold, 26.0, 770.0, sheet.event_name);
    line(&mut content, regular, 14.0, 740.0, sheet.venue);
    let starts = sheet.starts_at.format("%A %e %B %Y, %H:%M UTC").to_string();
    line(&mut content, regular, 14.0, 720.0, &starts);
    line(&mut content, regular, 12.0, 685.0, "Ticket holder");
    line(&mut content, bold, 16.0, 667.0, sheet.holder);
    line(&mut content, regular, 12.0, 640.0, "Ticket number");
    line(&mut content, bold, 20.0, 619.0, &sheet.ticket.number);

    // The QR code, quiet zone included, below the text. Drawn in module units (one unit per module,
    // y growing downwards from the code's top-left corner) so every rectangle has whole coordinates.
    let modules = code.width();
    let total = modules + 8;
    let unit = QR_SIDE / total as f32;
    let (qr_left, qr_top) = (left, 590.0);
    content.save_state();
    content.transform([unit, 0.0, 0.0, -unit, qr_left, qr_top]);
    content.set_fill_gray(1.0);
    content.rect(0.0, 0.0, total as f32, total as f32);
    content.fill_nonzero();
    content.set_fill_gray(0.0);
    let colors = code.to_colors();
    for (y, row) in colors.chunks(modules).enumerate() {
        let mut x = 0;
        while x < modules {
            if row[x] == Color::Dark {
                let start = x;
                while x < modules && row[x] == Color::Dark {
                    x += 1;
                }
                content.rect((start + 4) as f32, (y + 4) as f32, (x - start) as f32, 1.0);
            } else {
                x += 1;
            }
        }
    }
    content.fill_nonzero();
    content.restore_state();

    let issued = sheet
        .ticket
        .issued_at
        .format("Issued %Y-%m-%d %H:%M UTC")
        .to_string();
    let below = qr_top - QR_SIDE - 24.0;
    line(&mut content, regular, 10.0, below, &issued);
    line(
        &mut content,
        regular,
        10.0,
        below - 14.0,
        "Show this page, printed or on screen, at the entrance. One admission per ticket.",
    );
    content.finish()
}

/// `text` in WinAnsiEncoding, as far as Latin-1 goes; other characters become `?`.
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match u32::from(c) {
            0x20..=0x7e | 0xa0..=0xff => c as u8,
            _ => b'?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn win_ansi_keeps_latin1_and_replaces_the_rest() {
        assert_eq!(win_ansi("Café €5\n"), b"Caf\xe9 ?5?".to_vec());
    }

    #[test]
    fn module_size_is_checked() {
        assert!(matches!(
            qr_png("x", 0),
            Err(TicketRenderError::ModuleSize { px: 0 })
        ));
        assert!(matches!(
            qr_png("x", MAX_MODULE_PX + 1),
            Err(TicketRenderError::ModuleSize { .. })
        ));
    }

    #[test]
    fn oversized_payload_is_a_typed_error() {
        let huge = "x".repeat(4000);
        assert!(matches!(
            qr_svg(&huge),
            Err(TicketRenderError::QrPayload { len: 4000, .. })
        ));
    }
}
