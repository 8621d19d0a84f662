/*
 * Provider presets for the "Own SMTP server" settings form (no build step).
 *
 * The select carries the presets as JSON in data-own-smtp-presets. Choosing one fills host,
 * port, encryption, the login method and the published limits; every field stays editable.
 * Without this script the select is inert: the server ignores its value.
 *
 * Moving through the options with the arrow keys applies each one in turn, so every choice
 * starts again from the values the editor had before the first preset: only the chosen
 * provider's values remain, and "Choose a provider…" puts the editor's own values back.
 */
(function () {
  'use strict';

  // The inputs of a form field: one, or all the radio buttons of a choice (a RadioNodeList).
  function inputsOf(field) {
    return typeof field.length === 'number' && !field.options ? Array.from(field) : [field];
  }

  function setField(form, name, value) {
    var field = form.elements.namedItem(name);
    if (!field || field.value === value) {
      return;
    }
    // On a RadioNodeList this checks the radio button with that value.
    field.value = value;
    // Tell Wagtail's unsaved-changes tracking, the login method's script and any other listener.
    inputsOf(field).forEach(function (input) {
      if (input.type !== 'radio' || input.checked) {
        input.dispatchEvent(new Event('input', { bubbles: true }));
        input.dispatchEvent(new Event('change', { bubbles: true }));
      }
    });
  }

  function setUp(select) {
    if (select.hasAttribute('data-own-smtp-presets-ready')) {
      return;
    }
    select.setAttribute('data-own-smtp-presets-ready', '');
    var presets;
    try {
      presets = JSON.parse(select.getAttribute('data-own-smtp-presets') || '{}');
    } catch (error) {
      return;
    }
    var form = select.form;
    var names = [];
    Object.keys(presets).forEach(function (key) {
      Object.keys(presets[key].values).forEach(function (name) {
        if (names.indexOf(name) === -1 && form.elements.namedItem(name)) {
          names.push(name);
        }
      });
    });
    // The editor's own values, kept while presets are being tried.
    var before = null;

    // Announced to screen readers when a preset fills the form.
    var note = document.createElement('p');
    note.id = select.id + '-preset-note';
    note.className = 'help w-field__help';
    note.setAttribute('data-own-smtp-preset-note', '');
    note.setAttribute('aria-live', 'polite');
    select.insertAdjacentElement('afterend', note);
    var describedBy = select.getAttribute('aria-describedby');
    select.setAttribute('aria-describedby', (describedBy ? describedBy + ' ' : '') + note.id);

    select.addEventListener('change', function () {
      if (before === null) {
        before = {};
        names.forEach(function (name) {
          before[name] = form.elements.namedItem(name).value;
        });
      } else {
        names.forEach(function (name) {
          setField(form, name, before[name]);
        });
      }
      var preset = presets[select.value];
      if (!preset) {
        before = null;
        note.textContent = '';
        select.removeAttribute('data-own-smtp-preset-applied');
        return;
      }
      Object.keys(preset.values).forEach(function (name) {
        setField(form, name, preset.values[name]);
      });
      note.textContent = preset.note;
      select.setAttribute('data-own-smtp-preset-applied', select.value);
    });

    // Once the editor types into a field, their values are the ones to return to.
    names.forEach(function (name) {
      inputsOf(form.elements.namedItem(name)).forEach(function (input) {
        // Radio buttons clicked by the editor send "change" (and "input" in newer browsers).
        ['input', 'change'].forEach(function (type) {
          input.addEventListener(type, function (event) {
            if (event.isTrusted) {
              before = null;
            }
          });
        });
      });
    });
  }

  function setUpAll() {
    document.querySelectorAll('select[data-own-smtp-presets]').forEach(setUp);
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', setUpAll);
  } else {
    setUpAll();
  }
})();
