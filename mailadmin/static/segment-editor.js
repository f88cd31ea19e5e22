/* The segment editor, in place: "Add condition" and "Remove" change the rows without a round trip,
 * and every change asks the page's data-preview-url (the form's fields as a query string) for the
 * live count and sample. Without this file the same buttons submit the form and the server answers
 * with the rows, the count and the sample. */
(function () {
  "use strict";
  var form = document.getElementById("segment-editor");
  if (!form) { return; }
  var rows = document.getElementById("segment-rows");
  var template = document.getElementById("segment-row-template");
  var url = form.getAttribute("data-preview-url");
  var count = document.getElementById("segment-count");
  var sample = document.getElementById("segment-sample");
  var problem = document.getElementById("segment-problem");
  var next = 0, timer = null, asked = 0;
  rows.querySelectorAll("[data-row]").forEach(function (row) {
    next = Math.max(next, parseInt(row.getAttribute("data-row"), 10) + 1);
  });

  function addRow() {
    var html = template.innerHTML.split("c-__N__-").join("c-" + next + "-").split("__N__").join(String(next));
    next += 1;
    var holder = document.createElement("div");
    holder.innerHTML = html;
    rows.appendChild(holder.firstElementChild);
  }

  function show(answer) {
    problem.hidden = !answer.error;
    problem.textContent = answer.error || "";
    count.textContent = answer.error ? "—" : answer.count.toLocaleString("en");
    sample.replaceChildren();
    (answer.sample || []).forEach(function (contact) {
      var item = document.createElement("li");
      item.textContent = contact.email + (contact.name ? " (" + contact.name + ")" : "");
      sample.appendChild(item);
    });
  }

  function refresh() {
    var params = new URLSearchParams(new FormData(form));
    params.delete("csrf_token");
    var mine = ++asked;
    fetch(url + "?" + params.toString(), {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (answer) { if (mine === asked) { show(answer); } })
      .catch(function () { /* the next change asks again; the button still works */ });
  }

  function soon() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 300);
  }

  document.getElementById("add-condition").addEventListener("click", function (event) {
    event.preventDefault();
    addRow();
    soon();
  });
  rows.addEventListener("click", function (event) {
    var button = event.target.closest("[data-remove-row]");
    if (!button) { return; }
    event.preventDefault();
    button.closest(".segment-row").remove();
    soon();
  });
  form.addEventListener("change", soon);
  form.addEventListener("input", soon);
})();
