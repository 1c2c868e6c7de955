//! Ticket artefacts: a real ticket's QR code, rendered to PNG and read back by an independent QR decoder
//! (rqrr), gives its payload; the SVG is well-formed XML whose dark squares are exactly the code's dark
//! modules; the PDF ticket is one page and carries the ticket number.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use evently_core::{
    Actor, BookingRequest, Currency, Evently, Money, NewEvent, NewUser, Role, Ticket,
};
use evently_http::tickets::{TicketSheet, qr_code, qr_png, qr_svg, ticket_pdf};
use evently_storage::SqliteStore;

async fn issued_tickets(quantity: u32) -> (evently_core::Event, Vec<Ticket>) {
    let store = SqliteStore::open_in_memory().await.expect("sqlite");
    let engine = Evently::builder()
        .store(Arc::new(store))
        .build()
        .expect("engine");
    let admin = engine
        .register_user(NewUser {
            email: "admin@example.com".into(),
            name: "Admin".into(),
            password_hash: "unused".into(),
            role: Role::Admin,
            attributes: BTreeMap::new(),
        })
        .await
        .expect("admin");
    let admin = Actor::new(admin.id, admin.role);
    let now = engine.now();
    let event = engine
        .create_event(
            &admin,
            NewEvent {
                name: "Café Concert".into(),
                description: String::new(),
                venue: "Salle Pleyel".into(),
                category: "music".into(),
                starts_at: now + chrono::Duration::days(3),
                ends_at: now + chrono::Duration::days(4),
                capacity: 10,
                price: Money::new(1500, Currency::new("EUR").expect("currency")),
            },
        )
        .await
        .expect("event");
    let booking = engine
        .book(&admin, BookingRequest::new(event.id, quantity))
        .await
        .expect("book");
    let tickets = engine.tickets(&admin, booking.id).await.expect("tickets");
    assert_eq!(tickets.len(), quantity as usize);
    (event, tickets)
}

fn decode_png(png: &[u8]) -> String {
    let img = image::load_from_memory(png)
        .expect("PNG decodes")
        .to_luma8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        img.get_pixel(x as u32, y as u32)[0]
    });
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "exactly one QR code in the image");
    let (_meta, content) = grids[0].decode().expect("QR decodes");
    content
}

#[tokio::test]
async fn a_tickets_qr_png_decodes_to_its_payload() {
    let (event, tickets) = issued_tickets(3).await;
    let mut payloads = BTreeSet::new();
    for t in &tickets {
        assert!(t.qr_payload.starts_with("evently:v1:"), "{}", t.qr_payload);
        assert!(t.qr_payload.contains(&event.id.to_string()));
        assert!(t.qr_payload.ends_with(&t.number));
        for module_px in [3, 8] {
            let png = qr_png(&t.qr_payload, module_px).expect("png");
            assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
            assert_eq!(decode_png(&png), t.qr_payload);
        }
        payloads.insert(t.qr_payload.clone());
    }
    assert_eq!(payloads.len(), 3, "every ticket has its own payload");
    let numbers: BTreeSet<_> = tickets.iter().map(|t| &t.number).collect();
    assert_eq!(numbers.len(), 3, "unique ticket numbers");
}

#[tokio::test]
async fn the_svg_is_well_formed_and_draws_exactly_the_dark_modules() {
    let (_, tickets) = issued_tickets(1).await;
    let payload = &tickets[0].qr_payload;
    let svg = qr_svg(payload).expect("svg");
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );

    let code = qr_code(payload).expect("code");
    let width = code.width();
    let side = width + 8; // four-module quiet zone on each side
    assert_eq!(root.attribute("width"), Some(side.to_string().as_str()));
    assert_eq!(
        root.attribute("viewBox"),
        Some(format!("0 0 {side} {side}").as_str())
    );

    let path = root
        .children()
        .find(|n| n.has_tag_name("path"))
        .expect("a path of dark modules");
    let d = path.attribute("d").expect("path data");
    let drawn = cells_of_path(d);
    let expected: BTreeSet<(usize, usize)> = code
        .to_colors()
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == qrcode::Color::Dark)
        .map(|(i, _)| (i % width + 4, i / width + 4))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(drawn, expected);
}

/// The unit cells covered by an SVG path made of `M{x} {y}h{w}v{h}H{x}V{y}` rectangles.
fn cells_of_path(d: &str) -> BTreeSet<(usize, usize)> {
    let mut cells = BTreeSet::new();
    for rect in d.split('M').filter(|s| !s.is_empty()) {
        let nums: Vec<usize> = rect
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("number"))
            .collect();
        let [x, y, w, h, x2, y2] = nums[..] else {
            panic!("unexpected path segment {rect:?}");
        };
        assert_eq!((x, y), (x2, y2), "closed rectangle");
        for yy in y..y + h {
            for xx in x..x + w {
                cells.insert((xx, yy));
            }
        }
    }
    cells
}

#[tokio::test]
async fn the_pdf_ticket_is_one_page_with_the_ticket_number() {
    let (event, tickets) = issued_tickets(1).await;
    let t = &tickets[0];
    let pdf = ticket_pdf(&TicketSheet {
        ticket: t,
        event_name: &event.name,
        venue: &event.venue,
        starts_at: event.starts_at,
        holder: "Zoë Ünal",
    })
    .expect("pdf");
    assert!(pdf.starts_with(b"%PDF-"));
    assert!(pdf.trim_ascii_end().ends_with(b"%%EOF"));
    let has = |needle: &[u8]| pdf.windows(needle.len()).any(|w| w == needle);
    assert!(has(format!("({})", t.number).as_bytes()), "number shown");
    assert!(has(b"/Count 1"), "one page");
    assert_eq!(
        pdf.windows(11).filter(|w| w == b"/Type /Page").count(),
        2,
        "pages + page"
    );
    // Latin-1 text is kept in WinAnsiEncoding (é = 0xE9), written as a hex string.
    let hex = |bytes: &[u8]| -> Vec<u8> {
        let h: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
        format!("<{h}>").into_bytes()
    };
    let upper = pdf.to_ascii_uppercase();
    let has_upper = |needle: &[u8]| upper.windows(needle.len()).any(|w| w == needle);
    assert!(has_upper(&hex(b"Caf\xe9 Concert")), "event name");
    assert!(has_upper(&hex(b"Zo\xeb \xdcnal")), "holder");
    assert!(pdf.len() < 64 * 1024, "small: {} bytes", pdf.len());

    // The QR code is drawn in module units (a `cm` scaling by the module size): a white background
    // covering code and quiet zone, then one rectangle per horizontal run of dark modules. Those
    // rectangles cover exactly the code's dark modules.
    let text = String::from_utf8_lossy(&pdf);
    let code = qr_code(&t.qr_payload).expect("code");
    let width = code.width();
    let side = width + 8;
    let cm: Vec<f32> = text
        .lines()
        .find_map(|l| l.strip_suffix(" cm"))
        .expect("a module-unit transform")
        .split_whitespace()
        .map(|n| n.parse().expect("number"))
        .collect();
    assert!(cm[0] > 1.0 && (cm[0] + cm[3]).abs() < 1e-4, "{cm:?}");
    let rects: Vec<[usize; 4]> = text
        .lines()
        .filter_map(|l| l.strip_suffix(" re"))
        .map(|l| {
            let v: Vec<usize> = l
                .split_whitespace()
                .map(|n| n.parse().expect("whole module coordinates"))
                .collect();
            [v[0], v[1], v[2], v[3]]
        })
        .collect();
    assert_eq!(rects[0], [0, 0, side, side], "background");
    let mut drawn = BTreeSet::new();
    for [x, y, w, h] in &rects[1..] {
        assert_eq!(*h, 1, "one module high");
        for c in *x..x + w {
            assert!(drawn.insert((c, *y)), "module drawn twice");
        }
    }
    let expected: BTreeSet<(usize, usize)> = code
        .to_colors()
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == qrcode::Color::Dark)
        .map(|(i, _)| (i % width + 4, i / width + 4))
        .collect();
    assert_eq!(drawn, expected);
}
