// Progressive enhancement only: the portal works without it. A "Copy" button for a key shown once.
document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
  var field = document.getElementById(button.getAttribute("data-copy"));
  if (!field || !navigator.clipboard) return;
  button.hidden = false;
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(field.value).then(function () { button.textContent = "Copied"; });
  });
});
document.querySelectorAll("textarea.secret").forEach(function (field) {
  field.addEventListener("focus", function () { field.select(); });
});
