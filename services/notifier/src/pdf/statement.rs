//! The month statement as a PDF (issue 21): the invoice's fonts, styles and page furniture, so it
//! reads like the invoice — the month's legs (SimplyBook = ledger = invoice = deposits; fees =
//! invoice total = payments), every difference with its status, and every booking with each
//! leg's value, over as many pages as it takes. Every figure is real text (`pdftotext` finds it).

use billing_proto::convert::datetime;
use billing_proto::invoicing::{
    MonthStatement, StatementBooking, StatementDifference, StatementLeg,
};
use krilla::Document;
use krilla::metadata::Metadata;
use krilla::page::PageSettings;

use super::fonts::Faces;
use super::{
    BODY, BODY_BOLD, CELL, CELL_BOLD, Canvas, Fonts, HEADING, LABEL, LEFT, PAGE_H, PAGE_W,
    PdfError, RIGHT, ROW_H, Rendered, SMALL, Style, TABLE_BOTTOM, TABLE_TOP_NEXT, Weight, clip,
    wrap,
};
use crate::text::amount;

const TITLE: Style = Style {
    weight: Weight::Bold,
    size: 16.0,
    grey: 25,
};

// Legs: label, count and amount right-aligned, detail.
const LEG_COUNT_RIGHT: f32 = LEFT + 200.0;
const LEG_AMOUNT_RIGHT: f32 = LEFT + 280.0;
const LEG_DETAIL: f32 = LEFT + 292.0;
// Differences: subject, kind, status, detail.
const DIFF_KIND: f32 = LEFT + 140.0;
const DIFF_STATUS: f32 = LEFT + 248.0;
const DIFF_DETAIL: f32 = LEFT + 294.0;
// Bookings: text columns by left edge, amounts by right edge.
const B_SESSION: f32 = LEFT + 50.0;
const B_SIMPLYBOOK: f32 = LEFT + 104.0;
const B_LEDGER: f32 = LEFT + 182.0;
const B_FEE_RIGHT: f32 = LEFT + 272.0;
const B_INVOICED_RIGHT: f32 = LEFT + 318.0;
const B_DEPOSIT_RIGHT: f32 = LEFT + 364.0;
const B_RECEIVED_RIGHT: f32 = LEFT + 410.0;
const B_OUTCOME: f32 = LEFT + 418.0;
const DETAIL_LINE_H: f32 = 11.0;
/// Where the first page's content starts.
const FIRST_TOP: f32 = 50.0;

/// One piece of the statement, laid out top to bottom.
enum Item<'a> {
    Title,
    Heading(String),
    LegHeader,
    Leg(&'a StatementLeg, Vec<String>),
    DiffHeader,
    Diff(&'a StatementDifference, Vec<String>),
    BookingHeader,
    Booking(&'a StatementBooking),
    Note(String),
    Space,
}

impl Item<'_> {
    fn height(&self) -> f32 {
        match self {
            Item::Title => 86.0,
            Item::Heading(_) => 22.0,
            Item::LegHeader | Item::DiffHeader | Item::BookingHeader => 16.0,
            Item::Leg(_, lines) | Item::Diff(_, lines) => {
                ROW_H.max(lines.len() as f32 * DETAIL_LINE_H + 3.0)
            }
            Item::Booking(_) => ROW_H,
            Item::Note(_) => ROW_H,
            Item::Space => 8.0,
        }
    }
}

fn leg_label(name: &str) -> String {
    match name {
        "simplybook" => "SimplyBook bookings".into(),
        "ledger" => "Ledger bookings".into(),
        "invoice_billable" => "Billable on the invoice".into(),
        "deposits_expected" => "Deposits expected".into(),
        "deposits_received" => "Deposits received".into(),
        "deposits_unmatched" => "Deposit lines unmatched".into(),
        "fees_billable" => "Fees billable".into(),
        "invoice_total" => "Invoice total".into(),
        "payments_received" => "Payments received".into(),
        other => match other.strip_prefix("ledger_") {
            Some(status) => format!("    {}", status.replace('_', " ")),
            None => other.to_string(),
        },
    }
}

/// The statement's items, in order.
fn items<'a>(s: &'a MonthStatement, fonts: &Faces<'_>) -> Vec<Item<'a>> {
    let detail = |text: &str, width: f32| wrap(&fonts.regular, CELL.size, text, width);
    let mut items = vec![
        Item::Title,
        Item::Heading(
            "Bookings: SimplyBook = ledger = the invoice = deposits expected = deposits received"
                .into(),
        ),
        Item::LegHeader,
    ];
    for l in &s.booking_legs {
        items.push(Item::Leg(l, detail(&l.detail, RIGHT - LEG_DETAIL)));
    }
    items.push(Item::Space);
    items.push(Item::Heading(
        "Fees: billable = invoice total = payments received".into(),
    ));
    items.push(Item::LegHeader);
    for l in &s.fee_legs {
        items.push(Item::Leg(l, detail(&l.detail, RIGHT - LEG_DETAIL)));
    }
    items.push(Item::Space);
    items.push(Item::Heading(format!(
        "Differences: {} open of {}",
        s.open_differences,
        s.differences.len()
    )));
    if s.differences.is_empty() {
        items.push(Item::Note("None: every leg agrees.".into()));
    } else {
        items.push(Item::DiffHeader);
        for d in &s.differences {
            let text = if d.explanation.is_empty() {
                d.detail.clone()
            } else {
                format!("{} — explained: {}", d.detail, d.explanation)
            };
            items.push(Item::Diff(d, detail(&text, RIGHT - DIFF_DETAIL)));
        }
    }
    items.push(Item::Space);
    items.push(Item::Heading(format!(
        "Bookings of the month ({}), amounts in {}",
        s.bookings.len(),
        s.currency
    )));
    items.push(Item::BookingHeader);
    for b in &s.bookings {
        items.push(Item::Booking(b));
    }
    items
}

/// Items per page: greedy, each page starting with what did not fit on the one before.
fn paginate(items: &[Item<'_>]) -> Vec<std::ops::Range<usize>> {
    let mut pages = Vec::new();
    let (mut start, mut y) = (0, FIRST_TOP);
    for (i, item) in items.iter().enumerate() {
        if y + item.height() > TABLE_BOTTOM && i > start {
            pages.push(start..i);
            start = i;
            y = TABLE_TOP_NEXT;
        }
        y += item.height();
    }
    pages.push(start..items.len());
    pages
}

fn draw(c: &mut Canvas<'_, '_, '_>, s: &MonthStatement, item: &Item<'_>, y: f32) {
    let base = y + 10.0;
    match item {
        Item::Title => {
            c.text(TITLE, LEFT, y + 18.0, "Month statement");
            c.right(BODY_BOLD, RIGHT, y + 18.0, &s.period);
            c.clipped(HEADING, LEFT, y + 38.0, &s.tenant_name, RIGHT - LEFT);
            c.text(LABEL, LEFT, y + 54.0, &format!("Tenant {}", s.tenant_id));
            let invoice = if s.invoice_number.is_empty() {
                "no invoice yet".to_string()
            } else {
                format!("invoice {} ({})", s.invoice_number, s.invoice_status)
            };
            c.text(
                LABEL,
                LEFT,
                y + 66.0,
                &format!("Period {} · {invoice}", s.period),
            );
            let composed = datetime(s.composed_at.as_ref())
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default();
            c.right(LABEL, RIGHT, y + 66.0, &format!("Composed {composed}"));
            c.rule(y + 76.0, 0.8, 120);
        }
        Item::Heading(text) => c.clipped(HEADING, LEFT, y + 15.0, text, RIGHT - LEFT),
        Item::LegHeader => {
            c.shade(y, 14.0);
            c.text(CELL_BOLD, LEFT + 4.0, base, "Leg");
            c.right(CELL_BOLD, LEG_COUNT_RIGHT, base, "Count");
            c.right(
                CELL_BOLD,
                LEG_AMOUNT_RIGHT,
                base,
                &format!("Amount {}", s.currency),
            );
            c.text(CELL_BOLD, LEG_DETAIL, base, "Detail");
        }
        Item::Leg(l, lines) => {
            c.text(CELL, LEFT + 4.0, base, &leg_label(&l.name));
            c.right(CELL, LEG_COUNT_RIGHT, base, &l.count.to_string());
            c.right(CELL, LEG_AMOUNT_RIGHT, base, &amount(l.amount.as_ref()));
            for (i, line) in lines.iter().enumerate() {
                c.text(CELL, LEG_DETAIL, base + i as f32 * DETAIL_LINE_H, line);
            }
        }
        Item::DiffHeader => {
            c.shade(y, 14.0);
            c.text(CELL_BOLD, LEFT + 4.0, base, "Subject");
            c.text(CELL_BOLD, DIFF_KIND, base, "Difference");
            c.text(CELL_BOLD, DIFF_STATUS, base, "Status");
            c.text(CELL_BOLD, DIFF_DETAIL, base, "Detail");
        }
        Item::Diff(d, lines) => {
            c.clipped(CELL, LEFT + 4.0, base, &d.subject, DIFF_KIND - LEFT - 8.0);
            c.clipped(
                CELL,
                DIFF_KIND,
                base,
                &d.kind,
                DIFF_STATUS - DIFF_KIND - 4.0,
            );
            let status = if d.status == "open" { CELL_BOLD } else { CELL };
            c.text(status, DIFF_STATUS, base, &d.status);
            for (i, line) in lines.iter().enumerate() {
                c.text(CELL, DIFF_DETAIL, base + i as f32 * DETAIL_LINE_H, line);
            }
        }
        Item::BookingHeader => {
            c.shade(y, 14.0);
            c.text(CELL_BOLD, LEFT + 4.0, base, "Booking");
            c.text(CELL_BOLD, B_SESSION, base, "Session");
            c.text(CELL_BOLD, B_SIMPLYBOOK, base, "SimplyBook");
            c.text(CELL_BOLD, B_LEDGER, base, "Ledger");
            c.right(CELL_BOLD, B_FEE_RIGHT, base, "Fee");
            c.right(CELL_BOLD, B_INVOICED_RIGHT, base, "Invoiced");
            c.right(CELL_BOLD, B_DEPOSIT_RIGHT, base, "Deposit");
            c.right(CELL_BOLD, B_RECEIVED_RIGHT, base, "Received");
            c.text(CELL_BOLD, B_OUTCOME, base, "Deposit is");
        }
        Item::Booking(b) => {
            c.clipped(
                CELL,
                LEFT + 4.0,
                base,
                &b.booking_ref,
                B_SESSION - LEFT - 6.0,
            );
            let session = datetime(b.session_at.as_ref())
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            c.text(CELL, B_SESSION, base, &session);
            c.clipped(
                CELL,
                B_SIMPLYBOOK,
                base,
                &b.simplybook,
                B_LEDGER - B_SIMPLYBOOK - 4.0,
            );
            let ledger = if b.ledger_status.is_empty() {
                "none"
            } else {
                b.ledger_status.as_str()
            };
            c.clipped(CELL, B_LEDGER, base, ledger, B_FEE_RIGHT - B_LEDGER - 40.0);
            c.right(CELL, B_FEE_RIGHT, base, &amount(b.platform_fee.as_ref()));
            c.right(
                CELL,
                B_INVOICED_RIGHT,
                base,
                &amount(b.invoiced_fee.as_ref()),
            );
            c.right(
                CELL,
                B_DEPOSIT_RIGHT,
                base,
                &amount(b.deposit_expected.as_ref()),
            );
            c.right(
                CELL,
                B_RECEIVED_RIGHT,
                base,
                &amount(b.deposit_received.as_ref()),
            );
            c.clipped(CELL, B_OUTCOME, base, &b.deposit_outcome, RIGHT - B_OUTCOME);
        }
        Item::Note(text) => c.text(BODY, LEFT + 4.0, base, text),
        Item::Space => {}
    }
}

fn footer(c: &mut Canvas<'_, '_, '_>, s: &MonthStatement, page: usize, pages: usize) {
    c.rule(PAGE_H - 50.0, 0.5, 160);
    let label = clip(
        &c.fonts.regular,
        SMALL.size,
        &format!("Month statement {} · {}", s.period, s.tenant_name),
        (RIGHT - LEFT) * 0.7,
    );
    c.text(SMALL, LEFT, PAGE_H - 38.0, &label);
    c.right(
        SMALL,
        RIGHT,
        PAGE_H - 38.0,
        &format!("Page {page} of {pages}"),
    );
}

/// Renders `statement` with `fonts`. CPU-bound: call it from `spawn_blocking`.
pub fn render_statement(fonts: &Fonts, statement: &MonthStatement) -> Result<Rendered, PdfError> {
    let faces = fonts.faces();
    let items = items(statement, &faces);
    let pages = paginate(&items);
    let page_count = pages.len();
    let mut doc = Document::new();
    doc.set_metadata(
        Metadata::new()
            .title(format!(
                "Month statement {} {}",
                statement.tenant_id, statement.period
            ))
            .creator("billing-tracker notifier".to_string()),
    );
    for (index, range) in pages.into_iter().enumerate() {
        let settings = PageSettings::from_wh(PAGE_W, PAGE_H)
            .ok_or_else(|| PdfError::Render("page size".into()))?;
        let mut page = doc.start_page_with(settings);
        let mut surface = page.surface();
        let mut canvas = Canvas {
            surface: &mut surface,
            fonts: &faces,
        };
        let mut y = if index == 0 {
            FIRST_TOP
        } else {
            canvas.text(
                LABEL,
                LEFT,
                TABLE_TOP_NEXT - 20.0,
                &format!(
                    "Month statement {} · {} (continued)",
                    statement.period, statement.tenant_name
                ),
            );
            TABLE_TOP_NEXT
        };
        for item in &items[range] {
            draw(&mut canvas, statement, item, y);
            y += item.height();
        }
        footer(&mut canvas, statement, index + 1, page_count);
        surface.finish();
        page.finish();
    }
    let bytes = doc
        .finish()
        .map_err(|e| PdfError::Render(format!("{e:?}")))?;
    Ok(Rendered {
        bytes,
        pages: page_count,
    })
}

#[cfg(test)]
mod tests {
    use billing_proto::convert::money;

    use super::*;
    use crate::pdf::Fonts;

    fn statement(bookings: usize) -> MonthStatement {
        let m = |a: &str| Some(money("AUD", a.to_string()));
        MonthStatement {
            tenant_id: "claire".into(),
            period: "2026-10".into(),
            tenant_name: "Claire Hamilton Therapies".into(),
            currency: "AUD".into(),
            booking_legs: vec![StatementLeg {
                name: "deposits_received".into(),
                count: 4,
                amount: m("1234.50"),
                detail: "matched to the month's bookings".into(),
            }],
            differences: vec![StatementDifference {
                subject: "9405".into(),
                kind: "deposit_missing".into(),
                detail: "expected 24.00, received 0.00".into(),
                status: "open".into(),
                ..Default::default()
            }],
            bookings: (0..bookings)
                .map(|i| StatementBooking {
                    booking_ref: format!("{}", 9000 + i),
                    ledger_status: "confirmed".into(),
                    platform_fee: m("20.00"),
                    deposit_received: m(&format!("{i}.00")),
                    deposit_outcome: "received".into(),
                    ..Default::default()
                })
                .collect(),
            open_differences: 1,
            ..Default::default()
        }
    }

    #[test]
    fn a_long_statement_continues_over_numbered_pages() {
        let fonts = Fonts::builtin().expect("dejavu");
        let short = render_statement(&fonts, &statement(3)).expect("pdf");
        assert_eq!(short.pages, 1);
        let long = render_statement(&fonts, &statement(120)).expect("pdf");
        assert!(long.pages >= 3, "{} pages", long.pages);
        assert!(long.bytes.starts_with(b"%PDF"));
    }

    #[test]
    fn every_booking_lands_on_exactly_one_page() {
        let fonts = Fonts::builtin().expect("dejavu");
        let s = statement(200);
        let items = items(&s, &fonts.faces());
        let pages = paginate(&items);
        let covered: usize = pages.iter().map(std::ops::Range::len).sum();
        assert_eq!(covered, items.len());
        for w in pages.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        for (i, range) in pages.iter().enumerate() {
            let top = if i == 0 { FIRST_TOP } else { TABLE_TOP_NEXT };
            let height: f32 = items[range.clone()].iter().map(Item::height).sum();
            assert!(top + height <= TABLE_BOTTOM + 0.01, "page {i}: {height}");
        }
    }
}
