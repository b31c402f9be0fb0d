//! Turning PPL documents (as JSON values) into a [`CompiledPolicy`]. Structure is checked for
//! the whole input first (Pomerium's parser), then criteria are compiled (its generator), so
//! the error reported is the one Pomerium would report.

use serde_json::{Map, Value};

use super::criterion::Criterion;
use super::error::{go_type, DocPath, PolicyError, RulesError};
use super::eval::{CompiledPolicy, Operator, OperatorNode};

/// `allow` or `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

/// One operator with its criteria, before the criteria are compiled.
#[derive(Debug, Clone)]
pub(crate) struct RawOperator<'a> {
    pub action: Action,
    pub op: Operator,
    pub label: String,
    pub criteria: Vec<RawCriterion<'a>>,
}

/// `key: value` at `path`.
#[derive(Debug, Clone)]
pub(crate) struct RawCriterion<'a> {
    pub key: String,
    pub value: std::borrow::Cow<'a, Value>,
    pub path: DocPath,
}

/// Collects operators from documents, then compiles them.
#[derive(Debug, Default)]
pub(crate) struct Builder<'a> {
    operators: Vec<RawOperator<'a>>,
}

impl<'a> Builder<'a> {
    /// Adds a whole document (object or array of rule sets). Only structure is checked here.
    pub fn add_document(&mut self, doc: &'a Value, path: &DocPath) -> Result<(), PolicyError> {
        match doc {
            Value::Object(obj) => self.add_rule_set(obj, path),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = path.index(i);
                    match item {
                        Value::Object(obj) => self.add_rule_set(obj, &p)?,
                        other => return Err(rules(RulesError::RulesArrayType(go_type(other)), p)),
                    }
                }
                Ok(())
            }
            other => Err(rules(RulesError::RuleType(go_type(other)), path.clone())),
        }
    }

    /// Adds an operator built by code (legacy fields, implicit rules).
    pub fn add_operator(&mut self, op: RawOperator<'a>) {
        if !op.criteria.is_empty() {
            self.operators.push(op);
        }
    }

    fn add_rule_set(
        &mut self,
        obj: &'a Map<String, Value>,
        path: &DocPath,
    ) -> Result<(), PolicyError> {
        for (key, value) in obj {
            let p = path.key(key);
            let action = match key.as_str() {
                "allow" => Action::Allow,
                "deny" => Action::Deny,
                other => return Err(rules(RulesError::UnsupportedAction(other.to_string()), p)),
            };
            let Value::Object(ops) = value else {
                return Err(rules(RulesError::ActionValue(go_type(value)), p));
            };
            // Pomerium's order: the four operators in this order, then unknown keys.
            for op in [Operator::And, Operator::Or, Operator::Not, Operator::Nor] {
                let op_key = op.as_str();
                let Some(op_value) = ops.get(op_key) else {
                    continue;
                };
                let op_path = p.key(op_key);
                let Value::Array(items) = op_value else {
                    return Err(rules(
                        RulesError::CriteriaType {
                            op: op_key.to_string(),
                            ty: go_type(op_value),
                        },
                        op_path,
                    ));
                };
                let mut criteria = Vec::with_capacity(items.len());
                for (j, item) in items.iter().enumerate() {
                    let c_path = op_path.index(j);
                    let Value::Object(c) = item else {
                        return Err(rules(
                            RulesError::CriteriaArrayType {
                                op: op_key.to_string(),
                                ty: go_type(item),
                            },
                            c_path,
                        ));
                    };
                    let mut entries = c.iter();
                    let (Some((name, value)), None) = (entries.next(), entries.next()) else {
                        return Err(rules(
                            RulesError::CriterionKeys {
                                op: op_key.to_string(),
                            },
                            c_path,
                        ));
                    };
                    criteria.push(RawCriterion {
                        key: name.clone(),
                        value: std::borrow::Cow::Borrowed(value),
                        path: c_path.key(name),
                    });
                }
                self.add_operator(RawOperator {
                    action,
                    op,
                    label: op_path.0,
                    criteria,
                });
            }
            if let Some(other) = ops
                .keys()
                .find(|k| !matches!(k.as_str(), "and" | "or" | "not" | "nor" | "action"))
            {
                return Err(rules(
                    RulesError::UnsupportedConditional(other.clone()),
                    p.key(other),
                ));
            }
        }
        Ok(())
    }

    /// Compiles every collected criterion.
    pub fn finish(self) -> Result<CompiledPolicy, PolicyError> {
        let mut warnings = Vec::new();
        let mut allow = Vec::new();
        let mut deny = Vec::new();
        // Pomerium generates all allow rules, then all deny rules.
        let (allow_ops, deny_ops): (Vec<_>, Vec<_>) = self
            .operators
            .into_iter()
            .partition(|op| op.action == Action::Allow);
        for raw in allow_ops.into_iter().chain(deny_ops) {
            let criteria = raw
                .criteria
                .iter()
                .map(|c| {
                    Criterion::compile(&c.key, &c.value, &mut warnings).map_err(|kind| {
                        PolicyError::Criterion {
                            kind,
                            path: c.path.clone(),
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let node = OperatorNode {
                op: raw.op,
                label: raw.label.into_boxed_str(),
                criteria: criteria.into_boxed_slice(),
            };
            match raw.action {
                Action::Allow => allow.push(node),
                Action::Deny => deny.push(node),
            }
        }
        let mut seen = std::collections::HashSet::new();
        warnings.retain(|w| seen.insert(w.clone()));
        Ok(CompiledPolicy::new(allow, deny, warnings))
    }
}

fn rules(kind: RulesError, path: DocPath) -> PolicyError {
    PolicyError::Rules { kind, path }
}
