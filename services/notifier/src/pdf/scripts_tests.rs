//! Names in Japanese, Korean and Chinese on invoices: drawn in a CJK face (Debian's Noto Sans
//! CJK, which `scripts/test.sh` installs), extracted exactly, measured in the face they are drawn
//! with, and embedded as small subsets.

use billing_testkit::invoices::sample_invoice;

use super::tests::extract_text;
use super::*;

const NOTO: &str = "Noto Sans CJK JP";
const NOTO_BOLD: &str = "Noto Sans CJK JP Bold";

/// DejaVu Sans, then Debian's Noto Sans CJK JP, as the notifier loads them by default.
fn noto() -> Fonts {
    let files = FallbackFonts::debian();
    assert_eq!(
        files.0.len(),
        DEBIAN_NOTO_CJK.len(),
        "fonts-noto-cjk is not installed (scripts/test.sh installs it: apt-get install fonts-noto-cjk)"
    );
    Fonts::load(&files).expect("Noto Sans CJK loads")
}

/// The output of a poppler-utils tool run on `pdf`.
fn poppler(tool: &str, pdf: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!(
        "notifier-{tool}-{}-{:?}.pdf",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, pdf).expect("pdf written");
    let out = std::process::Command::new(tool)
        .arg(&path)
        .output()
        .expect("poppler-utils runs; scripts/test.sh installs it");
    std::fs::remove_file(&path).expect("removed");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A tenant whose names are written in another script, with services named in it.
fn invoice(tenant: &str, address: &str, services: &[&str]) -> Invoice {
    let mut invoice = sample_invoice(services.len(), Decimal::ZERO);
    invoice.tenant_name = tenant.into();
    invoice.address = address.into();
    invoice.time_zone = "Asia/Tokyo".into();
    for (line, service) in invoice.lines.iter_mut().zip(services) {
        line.service_name = (*service).into();
    }
    invoice
}

fn issuer(name: &str) -> Issuer {
    Issuer {
        legal_name: name.into(),
        email: "billing@example.test".into(),
        ..Default::default()
    }
}

const JAPANESE: [&str; 3] = ["指圧 60分", "マッサージ（90分）", "鍼灸 初診"];
const KOREAN: [&str; 2] = ["전신 마사지 60분", "김민준 선생님 상담"];
const CHINESE: [&str; 2] = ["推拿 60分钟", "张伟 针灸"];

#[test]
fn japanese_korean_and_chinese_names_print_in_a_cjk_face_and_extract_exactly() {
    let fonts = noto();
    let cases = [
        (
            invoice(
                "佐藤指圧院",
                "東京都渋谷区神南1-2-3\nさくらビル4階",
                &JAPANESE,
            ),
            issuer("株式会社プラットフォーム"),
        ),
        (
            invoice("김민준", "서울특별시 중구 세종대로 110", &KOREAN),
            issuer("Example Platform Pty Ltd"),
        ),
        (
            invoice("张伟", "上海市黄浦区南京东路100号", &CHINESE),
            issuer("Example Platform Pty Ltd"),
        ),
    ];
    for (invoice, issuer) in &cases {
        let rendered = render_with(&fonts, invoice, issuer).expect("pdf");
        let text = extract_text(&rendered.bytes);
        let printed = [invoice.tenant_name.as_str(), issuer.legal_name.as_str()]
            .into_iter()
            .chain(invoice.address.lines())
            .chain(invoice.lines.iter().map(|l| l.service_name.as_str()));
        for name in printed {
            assert!(text.contains(name), "{name:?} not in\n{text}");
        }
        // The footer prints the tenant's name again, in the regular weight.
        let footer = format!("Invoice {} · {}", invoice.number, invoice.tenant_name);
        assert!(text.contains(&footer), "{footer:?} not in\n{text}");

        // The glyphs come from Noto Sans CJK, regular and bold (the tenant's name under
        // "Bill to"), embedded as subsets; nothing else is embedded but DejaVu Sans.
        let listed = poppler("pdffonts", &rendered.bytes);
        let fonts_used: Vec<&str> = listed.lines().skip(2).collect();
        assert_eq!(fonts_used.len(), 4, "{listed}");
        for name in ["NotoSansCJKjp-Regular", "NotoSansCJKjp-Bold", "DejaVuSans"] {
            let line = fonts_used
                .iter()
                .find(|l| {
                    // A subset's tag, "+", the PostScript name (a CFF CID font's with its CMap).
                    l.split_whitespace()
                        .next()
                        .and_then(|n| n.split_once('+'))
                        .is_some_and(|(_, n)| n == name || n == format!("{name}-Identity-H"))
                })
                .unwrap_or_else(|| panic!("{name} not embedded:\n{listed}"));
            // emb, sub and uni are all "yes": embedded, subset, with a ToUnicode map.
            let flags: Vec<&str> = line.split_whitespace().rev().skip(2).take(3).collect();
            assert_eq!(flags, ["yes", "yes", "yes"], "{line}");
        }
        eprintln!(
            "{}: {} bytes\n{listed}",
            invoice.tenant_name,
            rendered.bytes.len()
        );
    }
}

#[test]
fn every_cjk_character_has_a_glyph_in_the_face_it_is_drawn_with() {
    let fonts = noto();
    let faces = fonts.faces();
    let names = [
        "佐藤指圧院",
        "株式会社プラットフォーム",
        "김민준",
        "张伟",
        "張偉",
    ]
    .into_iter()
    .chain(JAPANESE)
    .chain(KOREAN)
    .chain(CHINESE);
    for name in names {
        for chain in [&faces.regular, &faces.bold] {
            for (placed, c) in chain.place(name).zip(name.chars()) {
                assert!(chain.has(c), "{c:?} of {name:?} has no glyph");
                let face = chain.name(placed.face);
                if c.is_ascii() {
                    assert!(
                        face.starts_with("DejaVu Sans"),
                        "{c:?} of {name:?} in {face}"
                    );
                } else {
                    assert!(
                        face == NOTO || face == NOTO_BOLD,
                        "{c:?} of {name:?} in {face}"
                    );
                }
            }
        }
        // Bold text is drawn with the bold file.
        let last = faces.bold.place(name).last().expect("a character");
        if !name.ends_with(|c: char| c.is_ascii()) {
            assert_eq!(faces.bold.name(last.face), NOTO_BOLD);
        }
    }
    assert!(fonts.missing_scripts().iter().all(|s| {
        ![
            "Japanese kana",
            "Japanese kanji",
            "Simplified Chinese",
            "Traditional Chinese",
            "Korean",
        ]
        .contains(s)
    }));
    assert_eq!(fonts.fallback_names(), [NOTO, NOTO_BOLD]);
}

#[test]
fn cjk_text_is_measured_in_its_own_face_and_stays_in_its_column() {
    let fonts = noto();
    let faces = fonts.faces();
    let dejavu = Fonts::builtin().expect("dejavu");
    let dejavu = dejavu.faces();
    // Han and kana are a full em wide, Noto's Hangul 0.92 em; DejaVu's missing glyph is
    // narrower, so measuring in DejaVu would let CJK text run past its column.
    assert_eq!(faces.regular.width("指圧院", 10.0), 30.0);
    assert!((faces.regular.width("김민준", 10.0) - 27.6).abs() < 1e-4);
    assert!(dejavu.regular.width("指圧院", 10.0) < 25.0);

    // Runs: each in the first face that has its characters, widths adding up.
    let runs = faces.regular.runs("指圧 60分");
    let texts: Vec<&str> = runs.iter().map(|r| r.text).collect();
    assert_eq!(texts, ["指圧", " 60", "分"]);
    let total: f32 = runs.iter().map(|r| r.width).sum();
    assert!((total * 8.5 - faces.regular.width("指圧 60分", 8.5)).abs() < 1e-4);
    // The CJK runs are drawn glyph by glyph as measured; DejaVu's are shaped by krilla, and
    // so is a kana with a combining voicing mark (a cluster).
    let drawn: Vec<bool> = runs.iter().map(|r| r.glyphs.is_some()).collect();
    assert_eq!(drawn, [true, false, true]);
    let glyphs = runs[0].glyphs.as_ref().expect("glyphs");
    assert_eq!(glyphs.len(), 2);
    assert_eq!(glyphs[1].text_range, 3..6);
    let runs = faces.regular.runs("か\u{3099}き");
    assert_eq!(runs.len(), 1);
    assert!(runs[0].glyphs.is_none());

    // Clipped to a column, as the service column of a line is.
    let long = "全身指圧とアロマオイルマッサージ 90分 ホットストーン付き";
    for (chain, size) in [(&faces.regular, 8.5), (&faces.bold, 13.0)] {
        let clipped = clip(chain, size, long, 120.0);
        assert!(clipped.ends_with('…'), "{clipped}");
        assert!(chain.width(&clipped, size) <= 120.0, "{clipped}");
        assert!(
            chain.width(&clipped, size) > 120.0 - 2.0 * size,
            "{clipped}: cut too short"
        );
        assert!(long.starts_with(clipped.trim_end_matches('…')));
    }
    // What DejaVu alone would keep overflows once drawn in Noto.
    let naive = clip(&dejavu.regular, 8.5, long, 120.0);
    assert!(faces.regular.width(&naive, 8.5) > 120.0);

    // Wrapped: by words where there are spaces, by characters where there are none.
    let text = "お支払いは請求書番号を振込名義に添えて期日までにお願いいたします。ご不明な点はお問い合わせください";
    let lines = wrap(&faces.regular, 9.0, text, 150.0);
    assert!(lines.len() > 2, "{lines:?}");
    assert!(
        lines.iter().all(|l| faces.regular.width(l, 9.0) <= 150.0),
        "{lines:?}"
    );
    assert_eq!(lines.concat(), text);
    let lines = wrap(
        &faces.regular,
        9.0,
        "김민준 선생님의 전신 마사지와 상담 예약",
        80.0,
    );
    assert!(
        lines.iter().all(|l| faces.regular.width(l, 9.0) <= 80.0),
        "{lines:?}"
    );
    assert_eq!(lines.join(" "), "김민준 선생님의 전신 마사지와 상담 예약");
}

#[test]
fn a_cjk_name_adds_only_its_own_glyphs_to_the_pdf() {
    let fonts = noto();
    let latin = invoice(
        "Claire Hamilton Therapies Pty Ltd",
        "Manly NSW 2095",
        &["Remedial massage (60 min)"],
    );
    let japanese = invoice("佐藤指圧院", "東京都渋谷区神南1-2-3", &["指圧 60分"]);
    let latin = render_with(&fonts, &latin, &issuer("Example Platform Pty Ltd")).expect("pdf");
    let japanese =
        render_with(&fonts, &japanese, &issuer("Example Platform Pty Ltd")).expect("pdf");
    eprintln!(
        "latin: {} bytes, japanese: {} bytes",
        latin.bytes.len(),
        japanese.bytes.len()
    );
    // Subsets of the two Noto Sans CJK faces (19 and 20 MB files): a few kilobytes for the
    // dozen characters used (about 6 KB here).
    assert!(
        japanese.bytes.len() < latin.bytes.len() + 16_000,
        "{} bytes against {}",
        japanese.bytes.len(),
        latin.bytes.len()
    );
    // A fallback no text needs is not embedded at all.
    assert!(!poppler("pdffonts", &latin.bytes).contains("Noto"));
}
