//! Invoice PDFs (and the month statement, [`statement`]) rendered in-process with krilla: embedded (subset) fonts — DejaVu Sans, and for
//! what it lacks (Japanese, Chinese, Korean) the fallback fonts of [`fonts`] — real text that
//! can be extracted and searched, and a line table that continues over as many pages as needed
//! with its header repeated. Text is measured with the advance widths of the face each
//! character is drawn with (skrifa), so amounts right-align and long names are clipped or
//! wrapped instead of overflowing.

mod fonts;
#[cfg(test)]
mod scripts_tests;
mod statement;

use std::sync::OnceLock;

use billing_proto::convert;
use billing_proto::invoicing::{Invoice, InvoiceLine};
use chrono_tz::Tz;
use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::TextDirection;
use rust_decimal::Decimal;

use self::fonts::{Chain, Faces};
pub use self::fonts::{DEBIAN_NOTO_CJK, FallbackFonts, FontError, FontFile, Fonts};
pub use self::statement::render_statement;
use crate::text::{amount, long_date, money, percent};

// A4 in points.
const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const LEFT: f32 = 50.0;
const RIGHT: f32 = PAGE_W - 50.0;
/// Where the table starts on pages after the first.
const TABLE_TOP_NEXT: f32 = 80.0;
/// Rows stop here; the footer sits below.
const TABLE_BOTTOM: f32 = PAGE_H - 70.0;
const ROW_H: f32 = 14.0;
/// Extra height of an adjustment row for its explanation.
const NOTE_H: f32 = 11.0;
const HEADER_ROW_H: f32 = 20.0;

// Table columns: left edges of the text columns, right edges of the amounts.
const COL_REF: f32 = LEFT + 4.0;
const COL_SESSION: f32 = LEFT + 98.0;
const COL_SERVICE: f32 = LEFT + 190.0;
const COL_AMOUNT_RIGHT: f32 = RIGHT - 78.0;
const COL_FEE_RIGHT: f32 = RIGHT - 4.0;

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("fonts cannot be loaded: {0}")]
    Font(String),
    #[error("rendering: {0}")]
    Render(String),
}

/// The operator, who issues every invoice: printed at the top left.
#[derive(Debug, Clone, Default)]
pub struct Issuer {
    pub legal_name: String,
    /// Postal address; lines separated by `\n`.
    pub address: String,
    /// e.g. `ABN 00 000 000 000`; printed when set.
    pub tax_id: String,
    pub email: String,
}

/// A rendered invoice.
#[derive(Debug)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub pages: usize,
}

#[derive(Clone, Copy)]
enum Weight {
    Regular,
    Bold,
}

/// How a piece of text looks.
#[derive(Clone, Copy)]
struct Style {
    weight: Weight,
    size: f32,
    /// 0 is black.
    grey: u8,
}

const fn style(weight: Weight, size: f32, grey: u8) -> Style {
    Style { weight, size, grey }
}

const BODY: Style = style(Weight::Regular, 9.0, 25);
const BODY_BOLD: Style = style(Weight::Bold, 9.0, 25);
const LABEL: Style = style(Weight::Regular, 9.0, 100);
const SMALL: Style = style(Weight::Regular, 7.5, 100);
const CELL: Style = style(Weight::Regular, 8.5, 25);
const CELL_BOLD: Style = style(Weight::Bold, 8.5, 25);
const HEADING: Style = style(Weight::Bold, 10.0, 25);

/// Draws on one page with measured text.
struct Canvas<'a, 'b, 'f> {
    surface: &'a mut Surface<'b>,
    fonts: &'a Faces<'f>,
}

impl<'f> Canvas<'_, '_, 'f> {
    fn face(&self, style: Style) -> &Chain<'f> {
        match style.weight {
            Weight::Regular => &self.fonts.regular,
            Weight::Bold => &self.fonts.bold,
        }
    }

    fn width(&self, style: Style, value: &str) -> f32 {
        self.face(style).width(value, style.size)
    }

    fn text(&mut self, style: Style, x: f32, y: f32, value: &str) {
        if value.is_empty() {
            return;
        }
        self.surface.set_stroke(None);
        self.surface.set_fill(Some(Fill {
            paint: rgb::Color::new(style.grey, style.grey, style.grey).into(),
            ..Default::default()
        }));
        // Each run in its own face, placed where the measurement says the one before ends.
        let mut x = x;
        for run in self.face(style).runs(value) {
            let start = Point::from_xy(x, y);
            match &run.glyphs {
                Some(glyphs) => self
                    .surface
                    .draw_glyphs(start, glyphs, run.font, run.text, style.size, false),
                None => self.surface.draw_text(
                    start,
                    run.font,
                    style.size,
                    run.text,
                    false,
                    TextDirection::Auto,
                ),
            }
            x += run.width * style.size;
        }
    }

    /// Text that ends at `right`.
    fn right(&mut self, style: Style, right: f32, y: f32, value: &str) {
        let width = self.width(style, value);
        self.text(style, right - width, y, value);
    }

    /// Text cut with an ellipsis to fit `max_width`.
    fn clipped(&mut self, style: Style, x: f32, y: f32, value: &str, max_width: f32) {
        let face = self.face(style);
        let clipped = clip(face, style.size, value, max_width);
        self.text(style, x, y, &clipped);
    }

    /// A horizontal rule from `x` to the right margin.
    fn rule_from(&mut self, x: f32, y: f32, width: f32, grey: u8) {
        self.surface.set_fill(None);
        self.surface.set_stroke(Some(Stroke {
            paint: rgb::Color::new(grey, grey, grey).into(),
            width,
            ..Default::default()
        }));
        let mut path = PathBuilder::new();
        path.move_to(x, y);
        path.line_to(RIGHT, y);
        if let Some(path) = path.finish() {
            self.surface.draw_path(&path);
        }
    }

    /// A rule across the page.
    fn rule(&mut self, y: f32, width: f32, grey: u8) {
        self.rule_from(LEFT, y, width, grey);
    }

    fn shade(&mut self, top: f32, height: f32) {
        let Some(rect) = Rect::from_xywh(LEFT, top, RIGHT - LEFT, height) else {
            return;
        };
        self.surface.set_stroke(None);
        self.surface.set_fill(Some(Fill {
            paint: rgb::Color::new(238, 240, 243).into(),
            ..Default::default()
        }));
        let mut path = PathBuilder::new();
        path.push_rect(rect);
        if let Some(path) = path.finish() {
            self.surface.draw_path(&path);
        }
    }
}

/// Renders `invoice` (with its lines) to PDF with the fonts the notifier uses when
/// `NOTIFIER_FALLBACK_FONTS` is not set (DejaVu Sans, then Debian's Noto Sans CJK when
/// installed), loaded once per process. CPU-bound: call it from `spawn_blocking`.
pub fn render(invoice: &Invoice, issuer: &Issuer) -> Result<Rendered, PdfError> {
    static DEFAULT: OnceLock<Result<Fonts, String>> = OnceLock::new();
    let fonts = DEFAULT
        .get_or_init(|| Fonts::load(&FallbackFonts::debian()).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| PdfError::Font(e.clone()))?;
    render_with(fonts, invoice, issuer)
}

/// Renders `invoice` (with its lines) to PDF with `fonts`. CPU-bound: call it from
/// `spawn_blocking`.
pub fn render_with(
    fonts: &Fonts,
    invoice: &Invoice,
    issuer: &Issuer,
) -> Result<Rendered, PdfError> {
    let fonts = fonts.faces();
    let view = InvoiceView::new(invoice);
    let header = Header::new(&view, issuer, &fonts);
    let closing = Closing::new(&view, &fonts);
    let heights: Vec<f32> = invoice.lines.iter().map(row_height).collect();
    let pages = paginate(&heights, header.height(), closing.height());
    let page_count = pages.len();

    let mut doc = Document::new();
    doc.set_metadata(
        Metadata::new()
            .title(format!("{} {}", view.title_case(), invoice.number))
            .description(format!("Platform fees {}", invoice.period))
            .creator("billing-tracker notifier".to_string()),
    );
    for (index, rows) in pages.into_iter().enumerate() {
        let settings = PageSettings::from_wh(PAGE_W, PAGE_H)
            .ok_or_else(|| PdfError::Render("page size".into()))?;
        let mut page = doc.start_page_with(settings);
        let mut surface = page.surface();
        let mut canvas = Canvas {
            surface: &mut surface,
            fonts: &fonts,
        };
        let mut y = if index == 0 {
            header.draw(&mut canvas)
        } else {
            continuation_header(&mut canvas, &view)
        };
        if !rows.is_empty() {
            y = table_header(&mut canvas, &view, y);
            for line in &invoice.lines[rows] {
                y = table_row(&mut canvas, &view, line, y);
            }
        }
        if index + 1 == page_count {
            closing.draw(&mut canvas, y);
        }
        footer(&mut canvas, &view, index + 1, page_count);
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

/// What the layout needs from an invoice, converted once.
struct InvoiceView<'a> {
    inv: &'a Invoice,
    tz: Tz,
    currency: String,
    taxed: bool,
}

impl<'a> InvoiceView<'a> {
    fn new(inv: &'a Invoice) -> Self {
        let currency = inv
            .total
            .as_ref()
            .map(|m| m.currency_code.clone())
            .unwrap_or_default();
        InvoiceView {
            inv,
            tz: inv.time_zone.parse().unwrap_or(chrono_tz::UTC),
            currency,
            taxed: tax_rate(inv).is_some_and(|r| r > Decimal::ZERO),
        }
    }

    /// "Tax Invoice" when tax applies: the wording tax authorities (e.g. the ATO) expect.
    fn title(&self) -> &'static str {
        if self.taxed { "TAX INVOICE" } else { "INVOICE" }
    }

    fn title_case(&self) -> &'static str {
        if self.taxed { "Tax Invoice" } else { "Invoice" }
    }

    fn session(&self, line: &InvoiceLine) -> String {
        convert::datetime(line.session_at.as_ref())
            .map(|t| {
                t.with_timezone(&self.tz)
                    .format("%d %b %Y %H:%M")
                    .to_string()
            })
            .unwrap_or_default()
    }
}

/// The page-1 block above the table: operator, invoice facts, customer, period.
struct Header {
    issuer: Vec<(Style, String)>,
    facts: Vec<(String, String)>,
    title: &'static str,
    bill_to: Vec<(Style, String)>,
    summary: Vec<String>,
}

const HEADER_TOP: f32 = 62.0;
const LEADING: f32 = 12.5;

impl Header {
    fn new(view: &InvoiceView<'_>, issuer: &Issuer, fonts: &Faces<'_>) -> Self {
        let inv = view.inv;
        let mut issuer_lines = vec![(style(Weight::Bold, 13.0, 20), issuer.legal_name.clone())];
        issuer_lines.extend(lines_of(&issuer.address).map(|l| (BODY, l)));
        if !issuer.tax_id.is_empty() {
            issuer_lines.push((BODY, format!("Tax ID: {}", issuer.tax_id)));
        }
        issuer_lines.push((BODY, issuer.email.clone()));

        let mut facts = vec![
            ("Invoice number".to_string(), inv.number.clone()),
            ("Issue date".to_string(), long_date(&inv.issue_date)),
            ("Due date".to_string(), long_date(&inv.due_date)),
            ("Billing period".to_string(), month_name(view)),
        ];
        if let Some(status) = status_words(&inv.status) {
            facts.push(("Status".to_string(), status.to_string()));
        }

        let mut bill_to = vec![
            (HEADING, "Bill to".to_string()),
            (BODY_BOLD, inv.tenant_name.clone()),
        ];
        bill_to.extend(lines_of(&inv.address).map(|l| (BODY, l)));
        if !inv.tax_id.is_empty() {
            bill_to.push((BODY, format!("Tax ID: {}", inv.tax_id)));
        }
        bill_to.push((BODY, inv.billing_email.clone()));

        let adjustments = inv.lines.iter().filter(|l| l.kind == "adjustment").count();
        let mut counts = format!(
            "{} billable booking{} (confirmed or completed)",
            inv.booking_count,
            if inv.booking_count == 1 { "" } else { "s" }
        );
        if adjustments > 0 {
            counts.push_str(&format!(
                " and {adjustments} adjustment{} to earlier invoices",
                if adjustments == 1 { "" } else { "s" }
            ));
        }
        let mut summary = wrap(
            &fonts.regular,
            BODY.size,
            &format!("Platform fees for {}", period_text(view)),
            RIGHT - LEFT,
        );
        summary.extend(wrap(&fonts.regular, BODY.size, &counts, RIGHT - LEFT));
        if inv.status == "void" && !inv.void_reason.is_empty() {
            summary.extend(wrap(
                &fonts.regular,
                BODY.size,
                &format!("This invoice is void: {}", inv.void_reason),
                RIGHT - LEFT,
            ));
        }

        Header {
            issuer: issuer_lines,
            facts,
            title: view.title(),
            bill_to,
            summary,
        }
    }

    fn height(&self) -> f32 {
        let left = HEADER_TOP + LEADING * 0.5 + LEADING * self.issuer.len() as f32;
        let right = HEADER_TOP + 30.0 + 15.0 * self.facts.len() as f32;
        let bill_to = left.max(right) + 18.0 + LEADING * self.bill_to.len() as f32;
        bill_to + 14.0 + LEADING * self.summary.len() as f32 + 8.0
    }

    /// Draws the block; returns where the table starts.
    fn draw(&self, c: &mut Canvas<'_, '_, '_>) -> f32 {
        let mut left = HEADER_TOP;
        for (i, (style, line)) in self.issuer.iter().enumerate() {
            c.clipped(*style, LEFT, left, line, 260.0);
            left += if i == 0 { LEADING * 1.5 } else { LEADING };
        }

        c.right(
            style(Weight::Bold, 20.0, 20),
            RIGHT,
            HEADER_TOP + 4.0,
            self.title,
        );
        let mut right = HEADER_TOP + 30.0;
        for (label, value) in &self.facts {
            c.text(LABEL, RIGHT - 205.0, right, label);
            c.right(BODY_BOLD, RIGHT, right, value);
            right += 15.0;
        }

        let mut y = left.max(right) + 18.0;
        for (style, line) in &self.bill_to {
            c.clipped(*style, LEFT, y, line, 300.0);
            y += LEADING;
        }
        y += 14.0;
        for line in &self.summary {
            c.text(BODY, LEFT, y, line);
            y += LEADING;
        }
        debug_assert!((y + 8.0 - self.height()).abs() < 0.01);
        y + 8.0
    }
}

fn continuation_header(c: &mut Canvas<'_, '_, '_>, view: &InvoiceView<'_>) -> f32 {
    c.text(
        HEADING,
        LEFT,
        50.0,
        &format!("{} {} (continued)", view.title_case(), view.inv.number),
    );
    let name = clip(&c.fonts.regular, LABEL.size, &view.inv.tenant_name, 200.0);
    c.right(LABEL, RIGHT, 50.0, &name);
    TABLE_TOP_NEXT
}

fn table_header(c: &mut Canvas<'_, '_, '_>, view: &InvoiceView<'_>, top: f32) -> f32 {
    c.shade(top, HEADER_ROW_H - 4.0);
    let y = top + 11.0;
    c.text(CELL_BOLD, COL_REF, y, "Booking");
    c.text(CELL_BOLD, COL_SESSION, y, "Session");
    c.text(CELL_BOLD, COL_SERVICE, y, "Service");
    c.right(
        CELL_BOLD,
        COL_AMOUNT_RIGHT,
        y,
        &format!("Booking {}", view.currency),
    );
    c.right(
        CELL_BOLD,
        COL_FEE_RIGHT,
        y,
        &format!("Fee {}", view.currency),
    );
    top + HEADER_ROW_H
}

fn row_height(line: &InvoiceLine) -> f32 {
    if line.kind == "adjustment" {
        ROW_H + NOTE_H
    } else {
        ROW_H
    }
}

/// Draws one line; returns the top of the next.
fn table_row(
    c: &mut Canvas<'_, '_, '_>,
    view: &InvoiceView<'_>,
    line: &InvoiceLine,
    top: f32,
) -> f32 {
    let y = top + 9.0;
    c.clipped(
        CELL,
        COL_REF,
        y,
        &line.booking_ref,
        COL_SESSION - COL_REF - 6.0,
    );
    c.text(CELL, COL_SESSION, y, &view.session(line));
    let service = if line.kind == "adjustment" {
        format!("Adjustment: {}", line.service_name)
    } else {
        line.service_name.clone()
    };
    let booking_amount = amount(line.booking_amount.as_ref());
    // The service takes what the amount leaves, so a long amount (yen, rupiah) never overlaps.
    let service_width = COL_AMOUNT_RIGHT - c.width(CELL, &booking_amount) - 10.0 - COL_SERVICE;
    c.clipped(CELL, COL_SERVICE, y, &service, service_width);
    c.right(CELL, COL_AMOUNT_RIGHT, y, &booking_amount);
    c.right(CELL, COL_FEE_RIGHT, y, &amount(line.platform_fee.as_ref()));
    if line.kind == "adjustment" {
        c.clipped(
            SMALL,
            COL_SESSION,
            y + NOTE_H,
            &line.description,
            COL_FEE_RIGHT - COL_SESSION,
        );
    }
    let bottom = top + row_height(line);
    c.rule(bottom - 1.5, 0.3, 215);
    bottom
}

/// The block after the last line: totals, how to pay, notes.
struct Closing {
    totals: Vec<(String, String, bool)>,
    pay: Vec<String>,
    notes: Vec<String>,
}

impl Closing {
    fn new(view: &InvoiceView<'_>, fonts: &Faces<'_>) -> Self {
        let inv = view.inv;
        let mut totals = vec![(
            "Subtotal (fees)".to_string(),
            money(inv.subtotal.as_ref()),
            false,
        )];
        if view.taxed {
            let rate = tax_rate(inv).map(percent).unwrap_or_default();
            totals.push((format!("Tax ({rate})"), money(inv.tax.as_ref()), false));
        }
        totals.push(("Total".to_string(), money(inv.total.as_ref()), true));
        totals.push((
            "Amount paid".to_string(),
            money(inv.amount_paid.as_ref()),
            false,
        ));
        totals.push(("Balance due".to_string(), money(inv.balance.as_ref()), true));

        let width = RIGHT - LEFT;
        let wrapped = |text: &str| wrap(&fonts.regular, BODY.size, text, width);
        let mut pay = Vec::new();
        match inv.status.as_str() {
            "paid" => pay.push("Paid in full. Thank you.".to_string()),
            "void" => pay.push("This invoice is void; nothing is payable on it.".to_string()),
            _ => {
                pay.push(format!("Please pay by {}.", long_date(&inv.due_date)));
                if !inv.stripe_hosted_url.is_empty() {
                    pay.extend(wrapped(&format!("Pay online: {}", inv.stripe_hosted_url)));
                } else {
                    for line in lines_of(&inv.payment_instructions) {
                        pay.extend(wrapped(&line));
                    }
                    pay.push(format!("Payment reference: {}", inv.number));
                }
            }
        }

        let mut notes = Vec::new();
        if inv.lines.iter().any(|l| l.kind == "adjustment") {
            notes.extend(wrapped(
                "Adjustment lines correct bookings billed on earlier invoices (cancellations, \
                 price changes, bookings recorded after their month was invoiced).",
            ));
        }
        notes.extend(wrapped(&format!(
            "Fees are rounded per booking; session times are in {}.",
            view.tz.name()
        )));
        Closing { totals, pay, notes }
    }

    fn height(&self) -> f32 {
        24.0 + 16.0 * self.totals.len() as f32
            + 20.0
            + LEADING * (self.pay.len() + 1) as f32
            + 10.0
            + 10.0 * self.notes.len() as f32
    }

    fn draw(&self, c: &mut Canvas<'_, '_, '_>, top: f32) {
        let mut y = top + 24.0;
        let label_x = RIGHT - 230.0;
        for (label, value, strong) in &self.totals {
            let style = if *strong { BODY_BOLD } else { BODY };
            if *strong {
                c.rule_from(label_x, y - 11.0, 0.6, 150);
            }
            c.text(style, label_x, y, label);
            c.right(style, COL_FEE_RIGHT, y, value);
            y += 16.0;
        }
        y += 20.0;
        c.text(HEADING, LEFT, y, "How to pay");
        y += LEADING;
        for line in &self.pay {
            c.text(BODY, LEFT, y, line);
            y += LEADING;
        }
        y += 10.0;
        for line in &self.notes {
            c.text(SMALL, LEFT, y, line);
            y += 10.0;
        }
    }
}

fn footer(c: &mut Canvas<'_, '_, '_>, view: &InvoiceView<'_>, page: usize, pages: usize) {
    c.rule(PAGE_H - 50.0, 0.5, 160);
    c.text(
        SMALL,
        LEFT,
        PAGE_H - 38.0,
        &clip(
            &c.fonts.regular,
            SMALL.size,
            &format!(
                "{} {} · {}",
                view.title_case(),
                view.inv.number,
                view.inv.tenant_name
            ),
            (RIGHT - LEFT) * 0.7,
        ),
    );
    c.right(
        SMALL,
        RIGHT,
        PAGE_H - 38.0,
        &format!("Page {page} of {pages}"),
    );
}

/// Rows per page. The first page starts below the header; the closing block must fit under
/// the last rows, or it gets a page of its own (a page whose range is empty).
fn paginate(heights: &[f32], first_top: f32, closing: f32) -> Vec<std::ops::Range<usize>> {
    let mut pages = Vec::new();
    let mut start = 0;
    let mut y = first_top + HEADER_ROW_H;
    for (i, h) in heights.iter().enumerate() {
        if y + h > TABLE_BOTTOM && i > start {
            pages.push(start..i);
            start = i;
            y = TABLE_TOP_NEXT + HEADER_ROW_H;
        }
        y += h;
    }
    pages.push(start..heights.len());
    if y + closing > TABLE_BOTTOM {
        pages.push(heights.len()..heights.len());
    }
    pages
}

fn tax_rate(inv: &Invoice) -> Option<Decimal> {
    inv.tax_rate.parse().ok()
}

fn status_words(status: &str) -> Option<&'static str> {
    match status {
        "paid" => Some("Paid"),
        "partially_paid" => Some("Partly paid"),
        "overdue" => Some("Overdue"),
        "void" => Some("VOID"),
        "draft" => Some("Draft (not issued)"),
        _ => None,
    }
}

fn local_bounds(view: &InvoiceView<'_>) -> Option<(chrono::DateTime<Tz>, chrono::DateTime<Tz>)> {
    let inv = view.inv;
    let start = convert::datetime(inv.period_start.as_ref())?.with_timezone(&view.tz);
    let end = convert::datetime(inv.period_end.as_ref())?.with_timezone(&view.tz);
    Some((start, end - chrono::Duration::seconds(1)))
}

/// "October 2026"
fn month_name(view: &InvoiceView<'_>) -> String {
    local_bounds(view)
        .map(|(start, _)| start.format("%B %Y").to_string())
        .unwrap_or_else(|| view.inv.period.clone())
}

/// "October 2026 (1 Oct 2026 to 31 Oct 2026, Australia/Sydney)"
fn period_text(view: &InvoiceView<'_>) -> String {
    match local_bounds(view) {
        Some((start, last)) => format!(
            "{} ({} to {}, {})",
            start.format("%B %Y"),
            start.format("%-d %b %Y"),
            last.format("%-d %b %Y"),
            view.tz.name()
        ),
        None => view.inv.period.clone(),
    }
}

/// Non-empty, trimmed lines of a multi-line field.
fn lines_of(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
}

/// `value` cut with an ellipsis so that it fits `max_width`.
fn clip(face: &Chain<'_>, size: f32, value: &str, max_width: f32) -> String {
    if face.width(value, size) <= max_width {
        return value.to_string();
    }
    let ellipsis = face.width("…", size);
    let mut end = 0;
    let mut width = 0.0;
    for placed in face.place(value) {
        let w = placed.advance * size;
        if width + w + ellipsis > max_width {
            break;
        }
        width += w;
        end = placed.end;
    }
    format!("{}…", &value[..end])
}

/// Greedy word wrap to `max_width`; a word longer than a line (a URL) is broken by characters.
fn wrap(face: &Chain<'_>, size: f32, text: &str, max_width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() {
            word.to_string()
        } else {
            format!("{line} {word}")
        };
        if face.width(&candidate, size) <= max_width {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        for ch in word.chars() {
            line.push(ch);
            if face.width(&line, size) > max_width {
                line.pop();
                lines.push(std::mem::take(&mut line));
                line.push(ch);
            }
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fonts() -> Fonts {
        Fonts::builtin().expect("dejavu")
    }

    #[test]
    fn pages_hold_every_line_once_and_leave_room_for_the_totals() {
        for n in [0, 1, 10, 30, 31, 40, 100, 2000] {
            let heights: Vec<f32> = (0..n)
                .map(|i| if i % 7 == 3 { ROW_H + NOTE_H } else { ROW_H })
                .collect();
            let pages = paginate(&heights, 330.0, 200.0);
            let covered: usize = pages.iter().map(|r| r.len()).sum();
            assert_eq!(covered, n, "{n} lines");
            assert_eq!(pages[0].start, 0);
            assert!(pages.windows(2).all(|w| w[0].end == w[1].start));
            // Every page's rows fit between its top and the bottom margin.
            for (i, range) in pages.iter().enumerate() {
                let top = if i == 0 { 330.0 } else { TABLE_TOP_NEXT } + HEADER_ROW_H;
                let used: f32 = heights[range.clone()].iter().sum();
                assert!(
                    top + used <= TABLE_BOTTOM,
                    "page {i} of {n} lines overflows"
                );
            }
            // The closing block fits under the last page's rows.
            let last = pages.len() - 1;
            let top = if last == 0 { 330.0 } else { TABLE_TOP_NEXT } + HEADER_ROW_H;
            let used: f32 = heights[pages[last].clone()].iter().sum();
            assert!(
                top + used + 200.0 <= TABLE_BOTTOM,
                "{n} lines: totals overflow"
            );
        }
        assert!(paginate(&vec![ROW_H; 2000], 330.0, 200.0).len() > 40);
    }

    #[test]
    fn measured_text_is_clipped_and_wrapped_to_fit() {
        let fonts = fonts();
        let f = fonts.faces();
        let long = "Remedial massage with hot stones and aromatherapy, ninety minutes";
        let clipped = clip(&f.regular, 9.0, long, 120.0);
        assert!(clipped.ends_with('…'));
        assert!(f.regular.width(&clipped, 9.0) <= 120.0);
        assert_eq!(clip(&f.regular, 9.0, "Massage", 120.0), "Massage");

        let url = format!(
            "Pay online: https://invoice.stripe.com/i/{}",
            "x".repeat(200)
        );
        let lines = wrap(&f.regular, 9.0, &url, 300.0);
        assert!(lines.len() > 2);
        assert!(lines.iter().all(|l| f.regular.width(l, 9.0) <= 300.0));
        assert_eq!(lines.concat().replace(' ', ""), url.replace(' ', ""));
        // Digits have one width, so right-aligned amounts line up.
        assert_eq!(
            f.regular.width("1111.11", 9.0),
            f.regular.width("9999.99", 9.0)
        );
    }

    /// The text `pdftotext -layout` (poppler-utils) extracts from `pdf`.
    pub(super) fn extract_text(pdf: &[u8]) -> String {
        use std::io::Write as _;
        let mut child = std::process::Command::new("pdftotext")
            .args(["-layout", "-", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("pdftotext (poppler-utils) runs; scripts/test.sh installs it");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(pdf)
            .expect("pdf written to pdftotext");
        let out = child.wait_with_output().expect("pdftotext output");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("utf-8 text")
    }

    #[test]
    fn a_long_invoice_continues_over_pages_with_every_line_readable() {
        let invoice = billing_testkit::invoices::sample_invoice(2000, Decimal::new(10, 2));
        let issuer = Issuer {
            legal_name: "Example Platform Pty Ltd".into(),
            email: "billing@example.test".into(),
            ..Default::default()
        };
        let rendered = render(&invoice, &issuer).expect("pdf");
        let text = extract_text(&rendered.bytes);
        let pages: Vec<&str> = text
            .split('\u{c}')
            .filter(|p| !p.trim().is_empty())
            .collect();
        assert_eq!(pages.len(), rendered.pages);
        assert!(rendered.pages > 40, "{} pages", rendered.pages);
        for (i, page) in pages.iter().enumerate() {
            let footer = format!("Page {} of {}", i + 1, rendered.pages);
            assert!(page.contains(&footer), "page {}: no {footer:?}", i + 1);
            // The table header is repeated on every page that has rows.
            if i + 1 < pages.len() {
                assert!(page.contains("Booking AUD"), "page {} has no header", i + 1);
            }
        }
        assert!(pages[0].contains("TAX INVOICE"));
        assert!(pages[1].contains("(continued)"));
        for line in &invoice.lines {
            assert_eq!(
                text.matches(line.booking_ref.as_str()).count(),
                1,
                "{} printed once",
                line.booking_ref
            );
        }
        // Every adjustment says what changed, and the totals close the last page.
        assert_eq!(text.matches("cancelled; ").count(), 80);
        let last = pages.last().copied().unwrap_or_default();
        for label in ["Subtotal (fees)", "Tax (10%)", "Balance due", "How to pay"] {
            assert!(last.contains(label), "{label} missing on the last page");
        }
        let total = crate::text::money(invoice.total.as_ref());
        assert!(last.contains(&total), "{total} missing on the last page");
    }

    #[test]
    fn renders_a_pdf_with_the_number_in_its_metadata() {
        let invoice = Invoice {
            number: "TEST-2026-0001".into(),
            time_zone: "Australia/Sydney".into(),
            ..Default::default()
        };
        let issuer = Issuer {
            legal_name: "Operator".into(),
            email: "billing@example.test".into(),
            ..Default::default()
        };
        let pdf = render(&invoice, &issuer).expect("pdf");
        assert!(pdf.bytes.starts_with(b"%PDF-"));
        assert_eq!(pdf.pages, 1);
        assert!(
            pdf.bytes
                .windows(b"TEST-2026-0001".len())
                .any(|w| w == b"TEST-2026-0001")
        );
    }
}
