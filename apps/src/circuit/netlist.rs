//! Netlists from a template: the template names each design variable as `@name@`, and a design
//! fills in every placeholder with its value in SPICE's notation.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::design::Design;

/// Why a netlist could not be written.
#[derive(Debug)]
pub enum NetlistError {
    /// The template has a placeholder the design does not set.
    Unset(String),
    /// The design sets a variable the template never uses (a design for another circuit).
    Unused(&'static str),
    /// An `@` without its closing `@` on the same line.
    Unclosed {
        /// The line (from 1).
        line: usize,
    },
    /// Reading the template or writing the netlist failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for NetlistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetlistError::Unset(name) => write!(f, "the design does not set @{name}@"),
            NetlistError::Unused(name) => write!(f, "the template has no placeholder @{name}@"),
            NetlistError::Unclosed { line } => {
                write!(f, "unclosed placeholder on line {line} of the template")
            }
            NetlistError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for NetlistError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NetlistError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A netlist template.
///
/// ```
/// use cos_apps::circuit::{Design, Template, Variable};
/// let t = Template::new(".param w1=@w1@\n");
/// let vars = [Variable { name: "w1", lower: 1e-6, upper: 1e-4, unit: "m" }];
/// let d = Design::from_vector(&vars, &[2e-5]).unwrap();
/// assert_eq!(t.render(&d).unwrap(), ".param w1=2e-5\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
}

impl Template {
    /// A template from its text.
    ///
    /// ```
    /// let t = cos_apps::circuit::Template::new("* empty\n");
    /// assert_eq!(t.placeholders().unwrap().len(), 0);
    /// ```
    pub fn new(text: impl Into<String>) -> Template {
        Template { text: text.into() }
    }

    /// The template in file `path`.
    ///
    /// # Errors
    /// [`NetlistError::Io`] when it cannot be read.
    ///
    /// ```
    /// assert!(cos_apps::circuit::Template::load("/no/such/template.cir").is_err());
    /// ```
    pub fn load(path: impl AsRef<Path>) -> Result<Template, NetlistError> {
        let path = path.as_ref();
        std::fs::read_to_string(path)
            .map(Template::new)
            .map_err(|source| NetlistError::Io { path: path.to_path_buf(), source })
    }

    /// The placeholders' names, in order of appearance (repeated ones once).
    ///
    /// # Errors
    /// [`NetlistError::Unclosed`] for an `@` without its closing `@` on the same line.
    ///
    /// ```
    /// let t = cos_apps::circuit::Template::new("a=@a@ b=@b@ a2=@a@");
    /// assert_eq!(t.placeholders().unwrap(), ["a", "b"]);
    /// ```
    pub fn placeholders(&self) -> Result<Vec<String>, NetlistError> {
        let mut names = Vec::new();
        self.substitute(|name| {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
            Ok(String::new())
        })?;
        Ok(names)
    }

    /// The netlist for `design`: every `@name@` replaced by the design's value of `name`.
    ///
    /// # Errors
    /// [`NetlistError::Unset`] for a placeholder the design does not set,
    /// [`NetlistError::Unused`] for a variable of the design the template does not use,
    /// [`NetlistError::Unclosed`] for a broken placeholder.
    ///
    /// ```
    /// use cos_apps::circuit::{Design, Template, Variable};
    /// let vars = [Variable { name: "w1", lower: 1e-6, upper: 1e-4, unit: "m" }];
    /// let d = Design::from_vector(&vars, &[2e-5]).unwrap();
    /// assert!(Template::new("w=@w2@").render(&d).is_err());
    /// ```
    pub fn render(&self, design: &Design) -> Result<String, NetlistError> {
        let mut used = Vec::new();
        let text = self.substitute(|name| match design.get(name) {
            Some(v) => {
                used.push(name.to_string());
                Ok(spice_number(v))
            }
            None => Err(NetlistError::Unset(name.to_string())),
        })?;
        if let Some((name, _)) = design.iter().find(|(n, _)| !used.iter().any(|u| u == n)) {
            return Err(NetlistError::Unused(name));
        }
        Ok(text)
    }

    /// Writes the netlist for `design` to `dir/name` and returns its path.
    ///
    /// # Errors
    /// As [`Template::render`], and [`NetlistError::Io`] when the file cannot be written.
    ///
    /// ```
    /// use cos_apps::circuit::{Design, Template};
    /// let dir = std::env::temp_dir().join(format!("netlist-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let d = Design::from_vector(&[], &[]).unwrap();
    /// let path = Template::new("* nothing to size\n.end\n").write(&d, &dir, "c.cir").unwrap();
    /// assert!(std::fs::read_to_string(&path).unwrap().ends_with(".end\n"));
    /// std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn write(&self, design: &Design, dir: &Path, name: &str) -> Result<PathBuf, NetlistError> {
        let text = self.render(design)?;
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| NetlistError::Io { path: path.clone(), source })?;
        Ok(path)
    }

    /// The text with each placeholder replaced by `value(name)`.
    fn substitute(
        &self,
        mut value: impl FnMut(&str) -> Result<String, NetlistError>,
    ) -> Result<String, NetlistError> {
        let mut out = String::with_capacity(self.text.len());
        for (number, line) in self.text.split_inclusive('\n').enumerate() {
            let mut rest = line;
            while let Some(start) = rest.find('@') {
                out.push_str(&rest[..start]);
                let after = &rest[start + 1..];
                let end = after.find('@').ok_or(NetlistError::Unclosed { line: number + 1 })?;
                let name = &after[..end];
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(NetlistError::Unclosed { line: number + 1 });
                }
                out.push_str(&value(name)?);
                rest = &after[end + 1..];
            }
            out.push_str(rest);
        }
        Ok(out)
    }
}

/// `v` as a SPICE number: the shortest decimal that reads back as `v`, in exponent notation
/// (`2e-5`, `1.5e0`; a scale suffix such as `u` would read wrongly next to a unit).
fn spice_number(v: f64) -> String {
    format!("{v:e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::design::Variable;

    fn design(pairs: &[(&'static str, f64)]) -> Design {
        let vars: Vec<Variable> =
            pairs.iter().map(|&(name, _)| Variable { name, lower: -1e30, upper: 1e30, unit: "" }).collect();
        let x: Vec<f64> = pairs.iter().map(|&(_, v)| v).collect();
        Design::from_vector(&vars, &x).unwrap()
    }

    #[test]
    fn every_placeholder_is_replaced_and_values_read_back_exactly() {
        let t = Template::new("m1 d g s b nch w=@w1@ l=1u\n.param c=@cc@ again=@w1@\n");
        let d = design(&[("w1", 2.345678901234e-5), ("cc", 3e-12)]);
        let text = t.render(&d).unwrap();
        assert_eq!(text, "m1 d g s b nch w=2.345678901234e-5 l=1u\n.param c=3e-12 again=2.345678901234e-5\n");
        assert_eq!("2.345678901234e-5".parse::<f64>().unwrap(), 2.345678901234e-5);
    }

    #[test]
    fn the_opamp_template_takes_exactly_the_opamp_variables() {
        let t = Template::new(include_str!("../../circuits/opamp/opamp.cir"));
        let names = t.placeholders().unwrap();
        let vars: Vec<&str> = crate::circuit::opamp::VARIABLES.iter().map(|v| v.name).collect();
        assert_eq!(names, vars);
        let text = t.render(&crate::circuit::opamp::nominal()).unwrap();
        assert!(!text.contains('@'));
        assert!(text.contains(".param w1=2e-5 "), "{text}");
    }

    #[test]
    fn missing_unused_and_broken_placeholders_are_errors() {
        let d = design(&[("a", 1.0)]);
        assert!(matches!(Template::new("@a@ @b@").render(&d), Err(NetlistError::Unset(n)) if n == "b"));
        assert!(matches!(Template::new("no placeholder").render(&d), Err(NetlistError::Unused("a"))));
        assert!(matches!(Template::new("x\n@a").render(&d), Err(NetlistError::Unclosed { line: 2 })));
        assert!(matches!(Template::new("mail@a b@c").render(&d), Err(NetlistError::Unclosed { line: 1 })));
    }

    #[test]
    fn writing_to_a_missing_directory_is_an_io_error() {
        let d = design(&[]);
        let r = Template::new("* x\n").write(&d, Path::new("/no/such/dir"), "x.cir");
        assert!(matches!(r, Err(NetlistError::Io { .. })));
    }
}
