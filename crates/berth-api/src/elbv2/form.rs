//! The AWS Query protocol's request side: `application/x-www-form-urlencoded`
//! pairs (body or query string) read into a tree, and typed accessors that
//! name the parameter in every error.
//!
//! botocore serializes a structure's members as `Parent.Member`, a list as
//! `Name.member.1`, `Name.member.2`, ... (an empty list as `Name=`), and a
//! map as `Name.entry.N.key` / `Name.entry.N.value`. The tree keeps that
//! shape: every dotted segment is a level, so a list is a node with a
//! `member` child whose children are numbered.

use std::collections::BTreeMap;

use berth_control::ElbError;

use crate::agent::query_params;

/// One level of the parameter tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A value.
    Leaf(String),
    /// Members by name (or list positions by number).
    Map(BTreeMap<String, Node>),
}

/// Reads `a=b&c.d=e` pairs (percent-encoded, `+` for space) into a tree.
/// A name given twice, or as both a value and a structure, is refused.
pub fn parse(pairs: &[(String, String)]) -> Result<BTreeMap<String, Node>, ElbError> {
    let mut root: BTreeMap<String, Node> = BTreeMap::new();
    for (name, value) in pairs {
        if name.is_empty() {
            continue;
        }
        let segs: Vec<&str> = name.split('.').collect();
        if segs.iter().any(|s| s.is_empty()) {
            return Err(ElbError::validation(format!(
                "parameter name '{name}' is not valid (empty segment)"
            )));
        }
        insert(&mut root, &segs, value, name)?;
    }
    Ok(root)
}

fn insert(
    map: &mut BTreeMap<String, Node>,
    segs: &[&str],
    value: &str,
    full: &str,
) -> Result<(), ElbError> {
    let conflict = || {
        ElbError::validation(format!(
            "parameter '{full}' is given more than once, or both as a value and as a structure"
        ))
    };
    let Some((first, rest)) = segs.split_first() else {
        return Ok(());
    };
    if rest.is_empty() {
        if map.contains_key(*first) {
            return Err(conflict());
        }
        map.insert((*first).to_string(), Node::Leaf(value.to_string()));
        return Ok(());
    }
    let child = map
        .entry((*first).to_string())
        .or_insert_with(|| Node::Map(BTreeMap::new()));
    match child {
        Node::Map(m) => insert(m, rest, value, full),
        // `Name=` (an empty list) then `Name.member.1`: the list wins.
        Node::Leaf(v) if v.is_empty() => {
            let mut m = BTreeMap::new();
            insert(&mut m, rest, value, full)?;
            *child = Node::Map(m);
            Ok(())
        }
        Node::Leaf(_) => Err(conflict()),
    }
}

/// Reads `application/x-www-form-urlencoded` text into pairs.
pub fn pairs(text: &str) -> Vec<(String, String)> {
    query_params(Some(text))
}

/// A structure of the request: its members, and where it is (for errors).
#[derive(Debug, Clone)]
pub struct Params<'a> {
    map: &'a BTreeMap<String, Node>,
    path: String,
}

/// A structure with no members.
static EMPTY: BTreeMap<String, Node> = BTreeMap::new();

fn required(at: &str) -> ElbError {
    ElbError::validation(format!(
        "1 validation error detected: Value null at '{at}' failed to satisfy constraint: Member must not be null"
    ))
}

impl<'a> Params<'a> {
    /// The top-level parameters.
    pub fn root(map: &'a BTreeMap<String, Node>) -> Self {
        Self {
            map,
            path: String::new(),
        }
    }

    fn at(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// Whether the member was given at all.
    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// A string member.
    pub fn str(&self, name: &str) -> Result<Option<String>, ElbError> {
        match self.map.get(name) {
            None => Ok(None),
            Some(Node::Leaf(v)) => Ok(Some(v.clone())),
            Some(Node::Map(_)) => Err(ElbError::validation(format!(
                "parameter '{}' must be a single value, not a structure",
                self.at(name)
            ))),
        }
    }

    /// A required string member.
    pub fn req_str(&self, name: &str) -> Result<String, ElbError> {
        self.str(name)?.ok_or_else(|| required(&self.at(name)))
    }

    /// An integer member.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ElbError> {
        match self.str(name)? {
            None => Ok(None),
            Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
                ElbError::validation(format!(
                    "parameter '{}': '{v}' is not an integer",
                    self.at(name)
                ))
            }),
        }
    }

    /// A boolean member (`true` or `false`).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ElbError> {
        match self.str(name)? {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(ElbError::validation(format!(
                "parameter '{}': '{v}' is not a boolean (true or false)",
                self.at(name)
            ))),
        }
    }

    /// A structure member (`None` when absent).
    pub fn obj(&self, name: &str) -> Result<Option<Params<'a>>, ElbError> {
        match self.map.get(name) {
            None => Ok(None),
            Some(Node::Map(m)) => Ok(Some(Params {
                map: m,
                path: self.at(name),
            })),
            // `Name=` with nothing below: an empty structure.
            Some(Node::Leaf(v)) if v.is_empty() => Ok(Some(Params {
                map: &EMPTY,
                path: self.at(name),
            })),
            Some(_) => Err(ElbError::validation(format!(
                "parameter '{}' must be a structure (e.g. {}.Member=value)",
                self.at(name),
                self.at(name)
            ))),
        }
    }

    /// The list items of a member (`Name.member.N`), in order; an empty
    /// list when absent or given as `Name=`.
    fn items(&self, name: &str) -> Result<Vec<(usize, &'a Node)>, ElbError> {
        let node = match self.map.get(name) {
            None => return Ok(Vec::new()),
            Some(Node::Leaf(v)) if v.is_empty() => return Ok(Vec::new()),
            Some(Node::Leaf(_)) => {
                return Err(ElbError::validation(format!(
                    "parameter '{}' is a list: send it as {}.member.1, {}.member.2, ...",
                    self.at(name),
                    self.at(name),
                    self.at(name)
                )))
            }
            Some(Node::Map(m)) => m,
        };
        let members = match node.get("member") {
            Some(Node::Map(m)) if node.len() == 1 => m,
            _ => {
                return Err(ElbError::validation(format!(
                    "parameter '{}' is a list: send it as {}.member.1, {}.member.2, ...",
                    self.at(name),
                    self.at(name),
                    self.at(name)
                )))
            }
        };
        let mut numbered: Vec<(usize, &Node)> = Vec::new();
        for (k, v) in members {
            let n: usize = k
                .parse()
                .ok()
                .filter(|n| *n >= 1 && !k.starts_with('0') && k.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    ElbError::validation(format!(
                        "parameter '{}.member.{k}': list positions are numbers from 1",
                        self.at(name)
                    ))
                })?;
            numbered.push((n, v));
        }
        numbered.sort_by_key(|(n, _)| *n);
        Ok(numbered)
    }

    /// A list of strings.
    pub fn strs(&self, name: &str) -> Result<Vec<String>, ElbError> {
        self.items(name)?
            .into_iter()
            .map(|(_, n)| match n {
                Node::Leaf(v) => Ok(v.clone()),
                Node::Map(_) => Err(ElbError::validation(format!(
                    "parameter '{}' is a list of values, not of structures",
                    self.at(name)
                ))),
            })
            .collect()
    }

    /// A required list of strings.
    pub fn req_strs(&self, name: &str) -> Result<Vec<String>, ElbError> {
        if !self.has(name) {
            return Err(required(&self.at(name)));
        }
        self.strs(name)
    }

    /// A list of structures.
    pub fn list(&self, name: &str) -> Result<Vec<Params<'a>>, ElbError> {
        let at = self.at(name);
        self.items(name)?
            .into_iter()
            .map(|(i, n)| match n {
                Node::Map(m) => Ok(Params {
                    map: m,
                    path: format!("{at}.member.{i}"),
                }),
                Node::Leaf(v) if v.is_empty() => Ok(Params {
                    map: &EMPTY,
                    path: format!("{at}.member.{i}"),
                }),
                Node::Leaf(_) => Err(ElbError::validation(format!(
                    "parameter '{}' is a list of structures (e.g. {}.member.1.Key=value)",
                    self.at(name),
                    self.at(name)
                ))),
            })
            .collect()
    }

    /// A required list of structures.
    pub fn req_list(&self, name: &str) -> Result<Vec<Params<'a>>, ElbError> {
        if !self.has(name) {
            return Err(required(&self.at(name)));
        }
        self.list(name)
    }

    /// A list of structures, `None` when the member is absent (so that
    /// Modify* can tell "leave as is" from "set to").
    pub fn opt_list(&self, name: &str) -> Result<Option<Vec<Params<'a>>>, ElbError> {
        if self.has(name) {
            self.list(name).map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(body: &str) -> BTreeMap<String, Node> {
        parse(&pairs(body)).unwrap()
    }

    #[test]
    fn lists_structures_and_encoding() {
        let t = tree(
            "Action=CreateRule&Version=2015-12-01&Priority=10\
             &Conditions.member.1.Field=path-pattern\
             &Conditions.member.1.PathPatternConfig.Values.member.2=%2Fb%2A\
             &Conditions.member.1.PathPatternConfig.Values.member.1=%2Fa\
             &Conditions.member.2.Field=host-header&Conditions.member.2.Values.member.1=a+b\
             &Actions.member.1.Type=forward\
             &Actions.member.1.ForwardConfig.TargetGroups.member.1.Weight=3\
             &Subnets=",
        );
        let p = Params::root(&t);
        assert_eq!(p.req_str("Action").unwrap(), "CreateRule");
        assert_eq!(p.int("Priority").unwrap(), Some(10));
        let conds = p.list("Conditions").unwrap();
        assert_eq!(conds.len(), 2);
        assert_eq!(
            conds[0].str("Field").unwrap().as_deref(),
            Some("path-pattern")
        );
        let cfg = conds[0].obj("PathPatternConfig").unwrap().unwrap();
        assert_eq!(cfg.strs("Values").unwrap(), vec!["/a", "/b*"]);
        assert_eq!(conds[1].strs("Values").unwrap(), vec!["a b"]);
        let actions = p.list("Actions").unwrap();
        let tgs = actions[0]
            .obj("ForwardConfig")
            .unwrap()
            .unwrap()
            .list("TargetGroups")
            .unwrap();
        assert_eq!(tgs[0].int("Weight").unwrap(), Some(3));
        assert!(p.strs("Subnets").unwrap().is_empty());
        assert!(p.has("Subnets"));
        assert!(p.strs("Nope").unwrap().is_empty());
        assert!(!p.has("Nope"));
        assert_eq!(p.opt_list("Nope").unwrap().map(|v| v.len()), None);
    }

    #[test]
    fn numbers_sort_numerically() {
        let body: String = (1..=12)
            .map(|i| format!("Names.member.{i}=n{i}&"))
            .collect();
        let t = tree(&body);
        let names = Params::root(&t).strs("Names").unwrap();
        assert_eq!(names.first().map(String::as_str), Some("n1"));
        assert_eq!(names.last().map(String::as_str), Some("n12"));
        assert_eq!(names.len(), 12);
    }

    #[test]
    fn mistakes_are_validation_errors_naming_the_parameter() {
        assert!(parse(&pairs("A=1&A=2")).is_err());
        assert!(parse(&pairs("A=1&A.B=2")).is_err());
        assert!(parse(&pairs("A..B=1")).is_err());
        let t = tree("Port=eighty&Names=x&L.member.0=a&Flag=yes&S.member.1=a");
        let p = Params::root(&t);
        let msg = |e: ElbError| e.to_string();
        assert!(msg(p.int("Port").unwrap_err()).contains("'Port'"));
        assert!(msg(p.strs("Names").unwrap_err()).contains("Names.member.1"));
        assert!(msg(p.strs("L").unwrap_err()).contains("L.member.0"));
        assert!(p.bool("Flag").is_err());
        assert!(msg(p.req_str("LoadBalancerArn").unwrap_err())
            .contains("Value null at 'LoadBalancerArn'"));
        assert!(p.list("S").is_err());
        assert!(p.obj("Port").is_err());
    }
}
