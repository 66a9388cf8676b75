// The site's visit form: before sending, a change of a stored value asks for a reason (R5).
// Same-origin, no inline handlers (CSP default-src 'self'); the server checks the same rule.
(function () {
  "use strict";
  var form = document.getElementById("items-form");
  if (!form) { return; }
  function changedStored() {
    var changed = [];
    form.querySelectorAll("select[data-stored]").forEach(function (el) {
      if (el.dataset.stored !== "" && el.value !== el.dataset.stored) { changed.push(el.name); }
    });
    var seen = {};
    form.querySelectorAll("input[type=radio][data-stored]").forEach(function (el) {
      if (el.dataset.stored === "" || seen[el.name]) { return; }
      var checked = form.querySelector("input[type=radio][name='" + el.name + "']:checked");
      seen[el.name] = true;
      if (checked && checked.value !== el.dataset.stored) { changed.push(el.name); }
    });
    return changed;
  }
  var reason = document.getElementById("reason");
  form.addEventListener("submit", function (event) {
    if (!reason || (event.submitter && event.submitter.name === "preview")) { return; }
    var changed = changedStored();
    var old = document.getElementById("err-reason");
    if (changed.length && !reason.value.trim()) {
      event.preventDefault();
      if (!old) {
        old = document.createElement("span");
        old.id = "err-reason"; old.className = "field-error"; old.setAttribute("role", "alert");
        reason.insertAdjacentElement("afterend", old);
      }
      old.textContent = "You changed " + changed.length + " stored value(s) (" +
        changed.map(function (n) { return n.replace("item.", ""); }).join(", ") + "): give the reason before saving.";
      reason.setAttribute("aria-describedby", "err-reason");
      reason.setAttribute("aria-invalid", "true");
      reason.focus();
    }
  });
})();
