//! Templates: embedded defaults, operator overrides, and a broken one refused with its file and line.

use okey_notify::{TemplateError, Templates, context};

fn dir_with(name: &str, text: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::write(d.path().join(name), text).expect("write");
    d
}

#[test]
fn the_embedded_test_mail_is_french() {
    let t = Templates::embedded().expect("templates");
    let r = t
        .render(
            "test",
            context! { requested_by => "Zoé", message_number => "<x@y>", queued_at => "1er août" },
        )
        .expect("render");
    assert_eq!(r.subject, "okey : message d'essai de la messagerie");
    assert!(
        r.body
            .starts_with("Bonjour,\n\nCe message d'essai a été envoyé par okey")
    );
    assert!(r.body.contains("à la demande de Zoé."));
    assert!(r.body.ends_with("merci de ne pas y répondre.\n"));
    assert_eq!(t.sources()["test"], "embedded:test.txt");
}

#[test]
fn an_operator_template_replaces_the_default() {
    let d = dir_with(
        "test.txt",
        "{% block subject %}Essai\n  pour {{ requested_by }}{% endblock %}{% block body %}Corps : {{ queued_at }}{% endblock %}",
    );
    let t = Templates::load(Some(d.path())).expect("templates");
    let r = t
        .render(
            "test",
            context! { requested_by => "Zoé", message_number => "<x@y>", queued_at => "hier" },
        )
        .expect("render");
    // The subject is folded onto one line: no line break can reach the header.
    assert_eq!(r.subject, "Essai pour Zoé");
    assert_eq!(r.body, "Corps : hier\n");
}

fn refused(name: &str, text: &str) -> String {
    let d = dir_with(name, text);
    let e = Templates::load(Some(d.path())).expect_err("refused");
    let msg = e.to_string();
    assert!(
        msg.contains(&d.path().join(name).display().to_string()),
        "the error names the file: {msg}"
    );
    msg
}

#[test]
fn a_syntax_error_names_the_file_and_line() {
    let msg = refused(
        "test.txt",
        "{% block subject %}ok{% endblock %}\n{% block body %}\nligne 3\n{% if %}\n{% endblock %}",
    );
    assert!(msg.contains("test.txt:4:"), "{msg}");
}

#[test]
fn an_unknown_variable_is_refused_at_start() {
    let msg = refused(
        "test.txt",
        "{% block subject %}ok{% endblock %}{% block body %}\n\nBonjour {{ prenom }}{% endblock %}",
    );
    assert!(msg.contains("test.txt:3:"), "{msg}");
    assert!(msg.contains("undefined"), "{msg}");
}

#[test]
fn a_missing_block_or_an_empty_subject_is_refused() {
    let msg = refused("test.txt", "{% block subject %}ok{% endblock %}");
    assert!(msg.contains("body"), "{msg}");
    let msg = refused(
        "test.txt",
        "{% block subject %} {% endblock %}{% block body %}x{% endblock %}",
    );
    assert!(msg.contains("subject block renders empty"), "{msg}");
}

#[test]
fn a_file_that_is_no_template_okey_sends_is_refused() {
    let d = dir_with("tset.txt", "x");
    match Templates::load(Some(d.path())) {
        Err(TemplateError::Unknown(p)) => assert!(p.ends_with("tset.txt")),
        other => panic!("{other:?}"),
    }
}
