// The spawn form's projected cost per hour: nodes × (CPUs × the CPU-core-hour price + memory in
// GiB × the GiB-hour price + GPUs × the GPU-hour price), updated as the sizes change. The prices
// (millionths of a unit) are the data attributes of #spawn-cost, the ones in force now.
(function () {
  'use strict';

  var GIB = 1024 * 1024 * 1024;
  var UNITS = { '': null, k: 1024, m: 1024 * 1024, g: GIB, t: GIB * 1024 };

  // Bytes of "2G", "512M", "1.5Gi", "2" (a bare number is GiB), as the hub reads sizes.
  function bytes(text) {
    var m = /^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$/.exec(text || '');
    if (!m) { return NaN; }
    var unit = m[2].toLowerCase().replace(/b$/, '').replace(/i$/, '');
    if (!(unit in UNITS)) { return NaN; }
    return Number(m[1]) * (m[2] === '' ? GIB : UNITS[unit]);
  }

  function number(input, fallback) {
    if (!input || input.disabled || input.value.trim() === '') { return fallback; }
    return Number(input.value);
  }

  function init(box) {
    var form = box.closest('form');
    if (!form) { return; }
    var out = box.querySelector('.js-spawn-cost-value');
    var cpu = Number(box.dataset.cpuCoreHour) / 1e6;
    var mem = Number(box.dataset.memoryGibHour) / 1e6;
    var gpu = Number(box.dataset.gpuHour) / 1e6;
    var lang = document.documentElement.lang || 'en';
    function update() {
      var el = form.elements;
      var nodes = number(el.nodes, 1);
      var cpus = number(el.cpus, 0);
      var gpus = number(el.gpus, 0);
      var memory = el.memory && el.memory.value.trim() ? bytes(el.memory.value) / GIB : 0;
      var perHour = nodes * (cpus * cpu + memory * mem + gpus * gpu);
      if (!isFinite(perHour) || perHour < 0) {
        out.textContent = '—';
        return;
      }
      out.textContent = perHour.toLocaleString(lang, { minimumFractionDigits: 2, maximumFractionDigits: 4 });
    }
    form.addEventListener('input', update);
    form.addEventListener('change', update);
    update();
  }

  Array.prototype.forEach.call(document.querySelectorAll('.js-spawn-cost'), init);
}());
