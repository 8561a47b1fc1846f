//! The faces invoice text is drawn with, and how wide it is in them. DejaVu Sans (embedded in
//! the binary) comes first; each character it lacks is drawn with the first fallback face that
//! has it: fonts read from files at start-up (`NOTIFIER_FALLBACK_FONTS`; by default Debian's
//! fonts-noto-cjk, so that Japanese, Chinese and Korean names print). Widths are measured in
//! the face each character is actually drawn with, so right-aligned, clipped and wrapped text
//! stays inside its column whatever the script.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use krilla::Data;
use krilla::text::{Font, KrillaGlyph};
use skrifa::charmap::Charmap;
use skrifa::instance::{LocationRef, Size};
use skrifa::metrics::GlyphMetrics;
use skrifa::raw::FileRef;
use skrifa::string::StringId;
use skrifa::{FontRef, GlyphId, MetadataProvider};

static DEJAVU: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
static DEJAVU_BOLD: &[u8] = include_bytes!("../../assets/DejaVuSans-Bold.ttf");

/// Debian's fonts-noto-cjk: Noto Sans CJK, regular and bold. Face #0 of each collection is the
/// Japanese one (JP; #1 KR, #2 SC, #3 TC, #4 HK, #5 to #9 the monospaced cuts). Every face has
/// the glyphs of all of them — kana, Hangul, simplified and traditional Han — and they differ
/// only in which regional form a shared Han character takes: JP draws 直, 骨 or 今 as a Japanese
/// reader expects, and a Chinese or Korean name still prints in full, legibly and extractably.
/// The tenants whose names need it are Japanese (the demo's Tokyo tenant); a deployment that
/// serves mostly Chinese tenants can list `…-Regular.ttc#2` (SC) first instead.
pub const DEBIAN_NOTO_CJK: [&str; 2] = [
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
];

/// One face of a font file: `path` or `path#index` (the index of a face in a collection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FontFile {
    pub path: PathBuf,
    pub index: u32,
}

impl FromStr for FontFile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (path, index) = match s.rsplit_once('#') {
            Some((path, index)) => {
                let index = index.parse().map_err(|_| {
                    format!("{s}: `#` is followed by the index of a face, a number")
                })?;
                (path, index)
            }
            None => (s, 0),
        };
        if path.is_empty() {
            return Err(format!("{s}: a font file's path is missing"));
        }
        Ok(FontFile {
            path: PathBuf::from(path),
            index,
        })
    }
}

impl fmt::Display for FontFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.path.display(), self.index)
    }
}

/// The fallback faces, in the order they are tried.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FallbackFonts(pub Vec<FontFile>);

impl FallbackFonts {
    /// Debian's Noto Sans CJK JP ([`DEBIAN_NOTO_CJK`]), the files that are installed.
    pub fn debian() -> Self {
        FallbackFonts(
            DEBIAN_NOTO_CJK
                .iter()
                .filter(|path| Path::new(path).is_file())
                .map(|path| FontFile {
                    path: PathBuf::from(path),
                    index: 0,
                })
                .collect(),
        )
    }
}

/// Comma-separated [`FontFile`]s; `none` (or nothing) for no fallback at all.
impl FromStr for FallbackFonts {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() || s.trim().eq_ignore_ascii_case("none") {
            return Ok(FallbackFonts::default());
        }
        s.split(',')
            .filter(|entry| !entry.trim().is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(FallbackFonts)
    }
}

/// A font that cannot be used. The messages name the file, never what is printed with it.
#[derive(Debug, thiserror::Error)]
pub enum FontError {
    #[error("the embedded DejaVu Sans cannot be loaded")]
    Builtin,
    #[error("cannot read {}: {source}", .file.path.display())]
    Read {
        file: FontFile,
        source: std::io::Error,
    },
    #[error("{} is not an OpenType font or font collection", .file.path.display())]
    NotAFont { file: FontFile },
    #[error("{} holds faces #0 to #{last}, not #{}", .file.path.display(), .file.index)]
    NoSuchFace { file: FontFile, last: u32 },
    #[error("{} is a single font, not a collection: leave out #{}", .file.path.display(), .file.index)]
    NotACollection { file: FontFile },
    #[error("{file}: no Unicode character map, or a face krilla cannot embed")]
    Unusable { file: FontFile },
}

/// Font data, shared by krilla's `Font` and the measurements.
type Bytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// A loaded face.
struct Face {
    font: Font,
    data: Bytes,
    index: u32,
    /// e.g. "Noto Sans CJK JP Bold", for the start-up log.
    name: String,
    bold: bool,
}

/// Why a face cannot be used (the file is added by the caller).
enum Problem {
    NotAFont,
    NoSuchFace { last: u32 },
    NotACollection,
    Unusable,
}

impl Face {
    fn parse(data: Bytes, index: u32) -> Result<Face, Problem> {
        let bytes: &[u8] = (*data).as_ref();
        let font_ref = match FileRef::new(bytes) {
            Ok(FileRef::Font(font)) if index == 0 => font,
            Ok(FileRef::Font(_)) => return Err(Problem::NotACollection),
            Ok(FileRef::Collection(collection)) => {
                collection.get(index).map_err(|_| Problem::NoSuchFace {
                    last: collection.len().saturating_sub(1),
                })?
            }
            Err(_) => return Err(Problem::NotAFont),
        };
        if !font_ref.charmap().has_map() {
            return Err(Problem::Unusable);
        }
        let name = font_ref
            .localized_strings(StringId::FULL_NAME)
            .english_or_first()
            .map(|name| name.to_string())
            .unwrap_or_default();
        let bold = font_ref.attributes().weight >= skrifa::attribute::Weight::SEMI_BOLD;
        let font = Font::new(Data::from(data.clone()), index).ok_or(Problem::Unusable)?;
        Ok(Face {
            font,
            data,
            index,
            name,
            bold,
        })
    }

    fn builtin(data: &'static [u8]) -> Result<Face, FontError> {
        Face::parse(Arc::new(data), 0).map_err(|_| FontError::Builtin)
    }

    fn load(file: &FontFile) -> Result<Face, FontError> {
        // Read whole: the faces are used for every invoice the process renders.
        let data = std::fs::read(&file.path).map_err(|source| FontError::Read {
            file: file.clone(),
            source,
        })?;
        let file = file.clone();
        Face::parse(Arc::new(data), file.index).map_err(|problem| match problem {
            Problem::NotAFont => FontError::NotAFont { file },
            Problem::NoSuchFace { last } => FontError::NoSuchFace { file, last },
            Problem::NotACollection => FontError::NotACollection { file },
            Problem::Unusable => FontError::Unusable { file },
        })
    }

    fn view(&self) -> View<'_> {
        let font_ref = FontRef::from_index((*self.data).as_ref(), self.index)
            .expect("the face parsed when it was loaded, and its data never changes");
        let units_per_em = f32::from(
            font_ref
                .metrics(Size::unscaled(), LocationRef::default())
                .units_per_em,
        );
        View {
            face: self,
            charmap: font_ref.charmap(),
            glyphs: font_ref.glyph_metrics(Size::unscaled(), LocationRef::default()),
            units_per_em,
        }
    }
}

/// Every face invoices are drawn with: loaded once at start-up, shared by every render.
pub struct Fonts {
    /// DejaVu Sans, DejaVu Sans Bold, then the fallbacks in their configured order.
    faces: Vec<Face>,
    /// Indexes into `faces`, in the order they are tried for each weight.
    regular: Vec<usize>,
    bold: Vec<usize>,
}

impl fmt::Debug for Fonts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fonts")
            .field(
                "faces",
                &self.faces.iter().map(|f| &f.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Fonts {
    /// DejaVu Sans, then `fallbacks`. Each fallback serves the weight it has (its OS/2 weight
    /// class; semibold and heavier is bold): bold text tries the bold files first, then the
    /// regular ones, and regular text the other way round, so a single regular file also
    /// covers bold text (in its own weight rather than as a box).
    pub fn load(fallbacks: &FallbackFonts) -> Result<Fonts, FontError> {
        let mut faces = vec![Face::builtin(DEJAVU)?, Face::builtin(DEJAVU_BOLD)?];
        for file in &fallbacks.0 {
            faces.push(Face::load(file)?);
        }
        let order = |bold: bool| {
            let extra = 2..faces.len();
            let same = extra.clone().filter(|&i| faces[i].bold == bold);
            let other = extra.filter(|&i| faces[i].bold != bold);
            std::iter::once(usize::from(bold))
                .chain(same)
                .chain(other)
                .collect()
        };
        Ok(Fonts {
            regular: order(false),
            bold: order(true),
            faces,
        })
    }

    /// DejaVu Sans alone.
    pub fn builtin() -> Result<Fonts, FontError> {
        Fonts::load(&FallbackFonts::default())
    }

    /// The fallback faces' names, in order (e.g. "Noto Sans CJK JP").
    pub fn fallback_names(&self) -> Vec<&str> {
        self.faces[2..].iter().map(|f| f.name.as_str()).collect()
    }

    /// The scripts of [`SCRIPTS`] some character of which no face has, in regular or bold:
    /// names in them print as missing glyphs (boxes).
    pub fn missing_scripts(&self) -> Vec<&'static str> {
        let faces = self.faces();
        SCRIPTS
            .iter()
            .filter(|(_, sample)| {
                sample
                    .chars()
                    .any(|c| !faces.regular.has(c) || !faces.bold.has(c))
            })
            .map(|(script, _)| *script)
            .collect()
    }

    /// The chains of faces to measure and draw with, for the duration of a render.
    pub(super) fn faces(&self) -> Faces<'_> {
        let chain = |order: &[usize]| Chain {
            views: order.iter().map(|&i| self.faces[i].view()).collect(),
        };
        Faces {
            regular: chain(&self.regular),
            bold: chain(&self.bold),
        }
    }
}

/// Scripts a tenant's or a service's name may be written in, each with characters that show
/// whether the fonts have it: what the start-up log reports as missing.
pub const SCRIPTS: &[(&str, &str)] = &[
    ("Latin", "AzÅçĐőŞ"),
    ("Greek", "Ωλ"),
    ("Cyrillic", "Жя"),
    ("Armenian", "Աշ"),
    ("Georgian", "ვდ"),
    ("Hebrew", "שא"),
    ("Arabic", "عب"),
    ("Devanagari", "कष"),
    ("Bengali", "কষ"),
    ("Tamil", "தக"),
    ("Thai", "กษ"),
    ("Japanese kana", "さとアイ"),
    ("Japanese kanji", "佐藤指圧院"),
    ("Simplified Chinese", "张伟们"),
    ("Traditional Chinese", "張偉們"),
    ("Korean", "김민준"),
];

/// A face ready to measure.
struct View<'f> {
    face: &'f Face,
    charmap: Charmap<'f>,
    glyphs: GlyphMetrics<'f>,
    units_per_em: f32,
}

/// The regular and the bold chain.
pub(super) struct Faces<'f> {
    pub regular: Chain<'f>,
    pub bold: Chain<'f>,
}

/// The faces of one weight, in the order they are tried.
pub(super) struct Chain<'f> {
    views: Vec<View<'f>>,
}

/// One character as it is drawn: which face and glyph, where in the text, its advance in em.
#[derive(Debug, Clone, Copy)]
pub(super) struct Placed {
    pub face: usize,
    glyph: GlyphId,
    start: usize,
    pub end: usize,
    pub advance: f32,
    unshaped: bool,
}

/// Consecutive characters drawn with one face.
pub(super) struct Run<'t> {
    pub font: Font,
    pub text: &'t str,
    /// In em: multiply by the size in points.
    pub width: f32,
    /// The glyphs exactly as measured, when the run needs no shaping (see [`unshaped`]); else
    /// krilla shapes the text.
    pub glyphs: Option<Vec<KrillaGlyph>>,
}

/// Characters that belong to the character before them (combining marks, the voicing marks of
/// kana, variation selectors, joiners): drawn with its face so the cluster stays whole.
fn continues_cluster(c: char) -> bool {
    matches!(
        u32::from(c),
        0x0300..=0x036F
            | 0x1AB0..=0x1AFF
            | 0x1DC0..=0x1DFF
            | 0x200C..=0x200D
            | 0x20D0..=0x20FF
            | 0x3099..=0x309A
            | 0xFE00..=0xFE0F
            | 0xFE20..=0xFE2F
            | 0xE0100..=0xE01EF
    )
}

/// Characters drawn as one glyph each at its advance, exactly as measured: CJK ideographs,
/// kana, Hangul syllables and CJK punctuation need no shaping in horizontal text. A fallback
/// run made of them is drawn from its glyphs, which spares krilla parsing the large face's
/// layout tables to shape it (about 170 µs a run with Noto Sans CJK: twice the render time of
/// a long invoice with Japanese service names).
fn unshaped(c: char) -> bool {
    matches!(
        u32::from(c),
        0x2E80..=0x2FDF // CJK and Kangxi radicals
            | 0x3000..=0x3096 // CJK symbols and punctuation, hiragana
            | 0x309B..=0x30FF // kana (not the combining voicing marks before)
            | 0x3100..=0x318F // bopomofo, Hangul compatibility jamo
            | 0x31F0..=0x4DBF // katakana extensions, enclosed and compatibility CJK, Han ext. A
            | 0x4E00..=0x9FFF // CJK unified ideographs
            | 0xAC00..=0xD7A3 // Hangul syllables
            | 0xF900..=0xFAFF // CJK compatibility ideographs
            | 0xFF01..=0xFFEF // halfwidth and fullwidth forms
            | 0x20000..=0x3FFFF // Han extensions B to H
    )
}

impl Chain<'_> {
    fn glyph(&self, face: usize, c: char) -> Option<GlyphId> {
        self.views[face]
            .charmap
            .map(c)
            .filter(|&glyph| glyph != GlyphId::NOTDEF)
    }

    /// Whether some face of the chain has `c`.
    pub fn has(&self, c: char) -> bool {
        (0..self.views.len()).any(|face| self.glyph(face, c).is_some())
    }

    /// Each character of `text` with the face it is drawn with: the first that has it (the
    /// first face, with its missing glyph, when none has it), or the face of the character
    /// before when it continues that character's cluster.
    pub fn place<'a>(&'a self, text: &'a str) -> impl Iterator<Item = Placed> + 'a {
        let mut previous = None;
        text.char_indices().map(move |(start, c)| {
            let continues = continues_cluster(c);
            let face = match previous {
                Some(face) if continues => face,
                _ => (0..self.views.len())
                    .find(|&face| self.glyph(face, c).is_some())
                    .unwrap_or(0),
            };
            previous = Some(face);
            let view = &self.views[face];
            let glyph = view.charmap.map(c).unwrap_or(GlyphId::NOTDEF);
            // A selector or joiner the face does not map is absorbed by its cluster.
            let advance = if continues && glyph == GlyphId::NOTDEF {
                0.0
            } else {
                view.glyphs.advance_width(glyph).unwrap_or(0.0) / view.units_per_em
            };
            Placed {
                face,
                glyph,
                start,
                end: start + c.len_utf8(),
                advance,
                unshaped: unshaped(c),
            }
        })
    }

    /// Width of `text` at `size` points, as drawn: each character's advance in its own face
    /// (no kerning).
    pub fn width(&self, text: &str, size: f32) -> f32 {
        self.place(text).map(|p| p.advance).sum::<f32>() * size
    }

    /// `text` cut into runs of one face each, in order.
    pub fn runs<'t>(&self, text: &'t str) -> Vec<Run<'t>> {
        let mut runs: Vec<Vec<Placed>> = Vec::new();
        for placed in self.place(text) {
            match runs.last_mut() {
                Some(run) if run[0].face == placed.face => run.push(placed),
                _ => runs.push(vec![placed]),
            }
        }
        runs.into_iter()
            .map(|run| {
                let (start, end) = (run[0].start, run[run.len() - 1].end);
                // DejaVu's runs are always shaped (kerning, Arabic joining).
                let glyphs = (run[0].face > 0 && run.iter().all(|p| p.unshaped)).then(|| {
                    run.iter()
                        .map(|p| {
                            KrillaGlyph::new(
                                krilla::text::GlyphId::new(p.glyph.to_u32()),
                                p.advance,
                                0.0,
                                0.0,
                                0.0,
                                p.start - start..p.end - start,
                                None,
                            )
                        })
                        .collect()
                });
                Run {
                    font: self.views[run[0].face].face.font.clone(),
                    text: &text[start..end],
                    width: run.iter().map(|p| p.advance).sum(),
                    glyphs,
                }
            })
            .collect()
    }

    /// The name of the face at `index` in the chain (tests).
    #[cfg(test)]
    pub fn name(&self, index: usize) -> &str {
        &self.views[index].face.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn font_files_parse_as_path_and_face_index() {
        let parsed: FallbackFonts = "/a/b.ttc#2, /c.ttf,".parse().expect("parses");
        assert_eq!(
            parsed.0,
            vec![
                FontFile {
                    path: "/a/b.ttc".into(),
                    index: 2
                },
                FontFile {
                    path: "/c.ttf".into(),
                    index: 0
                },
            ]
        );
        assert_eq!(parsed.0[0].to_string(), "/a/b.ttc#2");
        assert_eq!(
            "none".parse::<FallbackFonts>(),
            Ok(FallbackFonts::default())
        );
        assert_eq!("".parse::<FallbackFonts>(), Ok(FallbackFonts::default()));
        // A `#` in a file's name needs the index after it.
        assert_eq!(
            "/f#1.ttf#0".parse::<FontFile>().map(|f| f.path),
            Ok(PathBuf::from("/f#1.ttf"))
        );
        let refused = "/a/b.ttc#JP".parse::<FallbackFonts>().expect_err("refused");
        assert!(refused.contains("index of a face"), "{refused}");
        assert!("#3".parse::<FontFile>().is_err());
    }

    #[test]
    fn a_font_that_cannot_be_used_is_refused_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("notifier-fonts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let text = dir.join("not-a-font.ttf");
        std::fs::write(&text, "hello").expect("written");
        let dejavu = dir.join("dejavu.ttf");
        std::fs::write(&dejavu, DEJAVU).expect("written");
        let cases = [
            (format!("{}/missing.ttc", dir.display()), "cannot read"),
            (text.display().to_string(), "is not an OpenType font"),
            (
                format!("{}#1", dejavu.display()),
                "single font, not a collection",
            ),
        ];
        for (setting, expected) in cases {
            let fonts: FallbackFonts = setting.parse().expect("parses");
            let err = Fonts::load(&fonts).expect_err("refused").to_string();
            assert!(err.contains(expected), "{setting}: {err}");
            assert!(err.contains(&dir.display().to_string()), "{err}");
        }
        let fonts: FallbackFonts = dejavu.display().to_string().parse().expect("parses");
        assert!(Fonts::load(&fonts).is_ok());
        std::fs::remove_dir_all(&dir).expect("removed");
    }

    #[test]
    fn without_fallbacks_the_cjk_scripts_are_reported_missing() {
        let fonts = Fonts::builtin().expect("dejavu");
        let missing = fonts.missing_scripts();
        for script in [
            "Japanese kana",
            "Japanese kanji",
            "Simplified Chinese",
            "Korean",
        ] {
            assert!(missing.contains(&script), "{missing:?}");
        }
        for script in ["Latin", "Greek", "Cyrillic", "Hebrew", "Arabic"] {
            assert!(!missing.contains(&script), "{missing:?}");
        }
        assert!(fonts.fallback_names().is_empty());
    }

    #[test]
    fn each_character_takes_the_first_face_that_has_it() {
        let fonts = Fonts::builtin().expect("dejavu");
        let faces = fonts.faces();
        // Without a fallback a kanji is DejaVu's missing glyph, and so is its width.
        let placed: Vec<Placed> = faces.regular.place("a指").collect();
        assert_eq!(placed[1].face, 0);
        assert!(placed[1].advance > 0.0);
        // A combining accent stays with its letter.
        let runs = faces.regular.runs("e\u{301}x");
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].text, "e\u{301}x");
    }
}
