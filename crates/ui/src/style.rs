//! The UI's stylesheet (injected once per document) and the theme.
//!
//! Theming is CSS custom properties with public names (`--consentry-color-primary`, ...): a page
//! may set them on any ancestor in its own CSS, or pass a `theme` object, which sets them on the
//! component's root. Every class is prefixed `cnsy-` and every rule is scoped under `.cnsy-root`,
//! so nothing here styles the host page.

/// The theme's keys: JS option name → public custom property.
pub const THEME_VARS: &[(&str, &str)] = &[
    ("colorPrimary", "--consentry-color-primary"),
    ("colorOnPrimary", "--consentry-color-on-primary"),
    ("colorBackground", "--consentry-color-background"),
    ("colorText", "--consentry-color-text"),
    ("colorMuted", "--consentry-color-muted"),
    ("colorBorder", "--consentry-color-border"),
    ("colorDanger", "--consentry-color-danger"),
    (
        "colorWarningBackground",
        "--consentry-color-warning-background",
    ),
    ("colorWarningText", "--consentry-color-warning-text"),
    ("colorFocus", "--consentry-color-focus"),
    ("borderRadius", "--consentry-radius"),
    ("fontFamily", "--consentry-font-family"),
];

/// Light, dark, or the user's `prefers-color-scheme`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ColorScheme {
    /// Follow the user's `prefers-color-scheme`.
    #[default]
    Auto,
    /// Always light.
    Light,
    /// Always dark.
    Dark,
}

/// The page's theme: custom properties (already mapped to their public names) and a logo.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Theme {
    /// (`--consentry-...`, value); dark-only values use `--consentry-dark-...`.
    pub vars: Vec<(String, String)>,
    /// Light, dark or the user's preference.
    pub color_scheme: ColorScheme,
    /// The product's logo above the card (`https:` or loopback `http:` only).
    pub logo_url: Option<String>,
}

impl Theme {
    /// Set a theme value by its JavaScript option name (`colorPrimary`, `borderRadius`, …, the
    /// keys of [`THEME_VARS`]); an unknown name is ignored. With `dark`, the value applies to the
    /// dark scheme only (`theme.dark.colorPrimary`).
    ///
    /// ```
    /// use consentry_ui::{ColorScheme, Theme};
    ///
    /// let theme = Theme { color_scheme: ColorScheme::Dark, ..Theme::default() }
    ///     .with("colorPrimary", "#4f46e5", false)
    ///     .with("colorPrimary", "#a5b4fc", true);
    /// assert_eq!(
    ///     theme.style_attr(),
    ///     "--consentry-color-primary:#4f46e5;--consentry-dark-color-primary:#a5b4fc;"
    /// );
    /// ```
    pub fn with(mut self, key: &str, value: impl Into<String>, dark: bool) -> Self {
        if let Some((_, var)) = THEME_VARS.iter().find(|(k, _)| *k == key) {
            let mut name = String::from(if dark {
                "--consentry-dark-"
            } else {
                "--consentry-"
            });
            name.push_str(&var["--consentry-".len()..]);
            self.vars.push((name, value.into()));
        }
        self
    }

    /// The root element's inline declarations (set through CSSOM, not as a `style` attribute:
    /// see `browser::set_style`). A value that could end the declaration (`;`, braces,
    /// quotes, backslash, angle brackets, newlines) is dropped rather than escaped: theme values
    /// are colours, lengths and font lists.
    pub fn style_attr(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.vars {
            let safe_name = name.starts_with("--consentry-")
                && name[2..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            let safe_value = !value.is_empty()
                && !value.contains(|c: char| {
                    matches!(c, ';' | '{' | '}' | '"' | '\'' | '\\' | '<' | '>') || c.is_control()
                });
            if safe_name && safe_value {
                out.push_str(name);
                out.push(':');
                out.push_str(value.trim());
                out.push(';');
            }
        }
        out
    }

    /// The root element's classes.
    pub fn root_class(&self) -> &'static str {
        match self.color_scheme {
            ColorScheme::Auto => "cnsy-root",
            ColorScheme::Light => "cnsy-root cnsy-light",
            ColorScheme::Dark => "cnsy-root cnsy-dark",
        }
    }
}

/// The `id` of the one `<style>` element the UI adds to `<head>`.
pub const STYLE_ID: &str = "consentry-ui-style";

macro_rules! light_vars {
    () => {
        "--cnsy-p:var(--consentry-color-primary,#1f55c9);--cnsy-op:var(--consentry-color-on-primary,#fff);\
--cnsy-bg:var(--consentry-color-background,#fff);--cnsy-fg:var(--consentry-color-text,#1b1f24);\
--cnsy-mu:var(--consentry-color-muted,#4a5260);--cnsy-bd:var(--consentry-color-border,#c9ced6);\
--cnsy-dg:var(--consentry-color-danger,#b42318);--cnsy-wb:var(--consentry-color-warning-background,#fff4e5);\
--cnsy-wf:var(--consentry-color-warning-text,#6e3900);--cnsy-fc:var(--consentry-color-focus,#1f55c9);"
    };
}

macro_rules! dark_vars {
    () => {
        "--cnsy-p:var(--consentry-dark-color-primary,var(--consentry-color-primary,#8ab4ff));--cnsy-op:var(--consentry-dark-color-on-primary,var(--consentry-color-on-primary,#0b1b3a));\
--cnsy-bg:var(--consentry-dark-color-background,var(--consentry-color-background,#16181d));--cnsy-fg:var(--consentry-dark-color-text,var(--consentry-color-text,#eef0f3));\
--cnsy-mu:var(--consentry-dark-color-muted,var(--consentry-color-muted,#b3bac5));--cnsy-bd:var(--consentry-dark-color-border,var(--consentry-color-border,#464d59));\
--cnsy-dg:var(--consentry-dark-color-danger,var(--consentry-color-danger,#ff9a8f));--cnsy-wb:var(--consentry-dark-color-warning-background,var(--consentry-color-warning-background,#3a2a10));\
--cnsy-wf:var(--consentry-dark-color-warning-text,var(--consentry-color-warning-text,#ffd58a));--cnsy-fc:var(--consentry-dark-color-focus,var(--consentry-color-focus,#8ab4ff));"
    };
}

/// The whole stylesheet (≈ 2.5 KB, ≈ 1 KB gzip).
pub const CSS: &str = concat!(
    ".cnsy-root{all:initial;display:block;",
    light_vars!(),
    "color-scheme:light;font-family:var(--consentry-font-family,system-ui,-apple-system,'Segoe UI',Roboto,sans-serif);\
font-size:16px;line-height:1.5;color:var(--cnsy-fg);text-align:start}",
    ".cnsy-root.cnsy-dark{color-scheme:dark;",
    dark_vars!(),
    "}@media (prefers-color-scheme:dark){.cnsy-root:not(.cnsy-light){color-scheme:dark;",
    dark_vars!(),
    "}}",
    ".cnsy-root *,.cnsy-root *::before,.cnsy-root *::after{box-sizing:border-box}",
    ".cnsy-root .cnsy-card{max-width:28rem;margin:0 auto;padding:1.5rem;background:var(--cnsy-bg);\
border:1px solid var(--cnsy-bd);border-radius:var(--consentry-radius,12px)}",
    ".cnsy-root .cnsy-brand{display:block;max-height:2.5rem;max-width:10rem;margin:0 auto 1rem}",
    ".cnsy-root .cnsy-app{display:flex;align-items:center;gap:.75rem;margin:0 0 1rem}",
    ".cnsy-root .cnsy-logo{width:3rem;height:3rem;border-radius:8px;object-fit:contain;flex:none}",
    ".cnsy-root .cnsy-h{margin:0;font-size:1.25rem;line-height:1.3;font-weight:650;color:var(--cnsy-fg)}",
    // The heading takes focus for screen readers; it is not a control, so no ring.
    ".cnsy-root .cnsy-h:focus{outline:none}",
    ".cnsy-root p,.cnsy-root ul,.cnsy-root h2{margin:0 0 .75rem;padding:0}",
    ".cnsy-root .cnsy-mu{color:var(--cnsy-mu);font-size:.875rem}",
    ".cnsy-root .cnsy-badge{display:inline-block;font-size:.75rem;font-weight:600;padding:.1rem .5rem;\
border-radius:999px;border:1px solid var(--cnsy-bd);color:var(--cnsy-mu)}",
    ".cnsy-root .cnsy-warn{padding:.75rem;border-radius:8px;background:var(--cnsy-wb);color:var(--cnsy-wf);\
font-size:.875rem;margin:0 0 1rem}",
    ".cnsy-root .cnsy-sec{margin:0 0 1rem}.cnsy-root h2.cnsy-sh{font-size:.875rem;font-weight:650;margin:0 0 .25rem;color:var(--cnsy-fg)}",
    ".cnsy-root .cnsy-list{list-style:none}.cnsy-root .cnsy-list li{padding:.375rem 0;border-top:1px solid var(--cnsy-bd)}",
    ".cnsy-root .cnsy-list li:first-child{border-top:0}.cnsy-root .cnsy-det{display:block}",
    ".cnsy-root .cnsy-actions{display:flex;gap:.75rem;margin-top:1.25rem}",
    ".cnsy-root .cnsy-btn{flex:1;appearance:none;margin:0;font:inherit;font-weight:600;padding:.625rem 1rem;\
border-radius:8px;cursor:pointer;border:1px solid var(--cnsy-bd);background:transparent;color:var(--cnsy-fg);\
text-transform:none;letter-spacing:normal;box-shadow:none}",
    ".cnsy-root .cnsy-btn.cnsy-pri{background:var(--cnsy-p);border-color:var(--cnsy-p);color:var(--cnsy-op)}",
    ".cnsy-root .cnsy-btn.cnsy-dgb{color:var(--cnsy-dg);border-color:var(--cnsy-dg);flex:none}",
    ".cnsy-root .cnsy-btn:focus{outline:none}.cnsy-root .cnsy-btn:focus-visible{outline:3px solid var(--cnsy-fc);outline-offset:2px}",
    ".cnsy-root .cnsy-btn:disabled{opacity:.6;cursor:progress}",
    ".cnsy-root .cnsy-err{color:var(--cnsy-dg)}",
    ".cnsy-root .cnsy-item{display:flex;gap:.75rem;align-items:flex-start;padding:.75rem 0;border-top:1px solid var(--cnsy-bd)}",
    ".cnsy-root .cnsy-item:first-of-type{border-top:0}.cnsy-root .cnsy-grow{flex:1;min-width:0;overflow-wrap:anywhere}",
    ".cnsy-root .cnsy-confirm{margin-top:.5rem}.cnsy-root .cnsy-confirm .cnsy-actions{margin-top:.5rem}",
    // The organization screens: a wider card, fieldsets of native radios, checkboxes and fields.
    ".cnsy-root .cnsy-card:has(.cnsy-wide){max-width:42rem}",
    ".cnsy-root fieldset{border:1px solid var(--cnsy-bd);border-radius:8px;margin:0 0 1rem;padding:.75rem 1rem}",
    ".cnsy-root legend{font-size:.875rem;font-weight:650;padding:0 .25rem}",
    ".cnsy-root .cnsy-opt{display:flex;gap:.5rem;align-items:center;padding:.25rem 0;overflow-wrap:anywhere}",
    ".cnsy-root .cnsy-opt input{width:1.1rem;height:1.1rem;accent-color:var(--cnsy-p);flex:none;margin:0}",
    ".cnsy-root .cnsy-in{font:inherit;font-size:.875rem;padding:.375rem .5rem;border:1px solid var(--cnsy-mu);\
border-radius:6px;background:var(--cnsy-bg);color:var(--cnsy-fg);flex:1;min-width:0}",
    ".cnsy-root input:focus-visible{outline:3px solid var(--cnsy-fc);outline-offset:2px}",
    ".cnsy-root .cnsy-row{display:flex;gap:.5rem;align-items:center;margin:.5rem 0}",
    ".cnsy-root .cnsy-row .cnsy-btn{flex:none;padding:.375rem .75rem}",
    ".cnsy-root .cnsy-sub{margin:.25rem 0 .5rem 1.25rem}.cnsy-root .cnsy-pick{margin-left:1.6rem}",
);
