/*
 * The login method of the "Own SMTP server" settings form (no build step).
 *
 * Every radio button carries, in data-own-smtp-auth-fields, which fields each method uses
 * (login_form.METHOD_FIELDS). This script shows the fields of the chosen method and hides the others;
 * their values stay in the form and the server ignores them. Without this script every field
 * shows, and its help text names the method that uses it.
 */
(function () {
  'use strict';

  // The field's block in the panel: its label, input, help text and errors.
  function blockOf(form, name) {
    var field = form.elements.namedItem(name);
    var input = field && (typeof field.length === 'number' && !field.options ? field[0] : field);
    var wrapper = input && input.closest('[data-field-wrapper]');
    if (!wrapper) {
      return null;
    }
    var panel = wrapper.parentElement;
    return panel && panel.classList.contains('w-panel__wrapper') ? panel : wrapper;
  }

  function setUp(radios) {
    var first = radios[0];
    var form = first.form;
    if (!form || form.hasAttribute('data-own-smtp-auth-ready')) {
      return;
    }
    form.setAttribute('data-own-smtp-auth-ready', '');
    var fields;
    try {
      fields = JSON.parse(first.getAttribute('data-own-smtp-auth-fields') || '{}');
    } catch (error) {
      return;
    }
    var all = [];
    Object.keys(fields).forEach(function (method) {
      fields[method].forEach(function (name) {
        if (all.indexOf(name) === -1) {
          all.push(name);
        }
      });
    });

    function show() {
      var chosen = form.elements.namedItem(first.name).value;
      var used = fields[chosen];
      if (!used) {
        return; // nothing chosen: leave every field visible
      }
      all.forEach(function (name) {
        var block = blockOf(form, name);
        if (block) {
          block.hidden = used.indexOf(name) === -1;
        }
      });
    }

    radios.forEach(function (radio) {
      radio.addEventListener('change', show);
    });
    show();
  }

  function setUpAll() {
    var groups = {};
    document.querySelectorAll('input[type=radio][data-own-smtp-auth-fields]').forEach(function (radio) {
      (groups[radio.name] = groups[radio.name] || []).push(radio);
    });
    Object.keys(groups).forEach(function (name) {
      setUp(groups[name]);
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', setUpAll);
  } else {
    setUpAll();
  }
})();
