/*
 * Provider presets for the "Own SMTP server" settings form (no build step).
 *
 * The select carries the presets as JSON in data-own-smtp-presets. Choosing one fills host,
 * port, encryption and the published limits; every field stays editable. Without this script
 * the select is inert: the server ignores its value.
 */
(function () {
  'use strict';

  function setField(form, name, value) {
    var field = form.elements.namedItem(name);
    if (!field || field.value === value) {
      return;
    }
    field.value = value;
    // Tell Wagtail's unsaved-changes tracking and any other listener.
    field.dispatchEvent(new Event('input', { bubbles: true }));
    field.dispatchEvent(new Event('change', { bubbles: true }));
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
      var preset = presets[select.value];
      if (!preset) {
        note.textContent = '';
        select.removeAttribute('data-own-smtp-preset-applied');
        return;
      }
      Object.keys(preset.values).forEach(function (name) {
        setField(select.form, name, preset.values[name]);
      });
      note.textContent = preset.note;
      select.setAttribute('data-own-smtp-preset-applied', select.value);
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
