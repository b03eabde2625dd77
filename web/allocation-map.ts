/**
 * The allocation picture: one cell per payload block on a <canvas>, coloured by the block's BAT state.
 * Pointing at a cell (mouse) or moving to it (arrow keys, once the canvas has focus) shows its block
 * index, virtual range and file offset in a tooltip and in a status line read by screen readers; Enter
 * opens the block's first sector in the sector viewer. Above ~100k blocks, a cell stands for several
 * consecutive blocks (the most notable state among them is drawn; the tooltip counts them all).
 *
 * For tests and tools the canvas carries its model: `data-cells` (one letter per cell, see CELL_STATES),
 * `data-columns`, `data-cell-size` and `data-gap` (CSS pixels), `data-blocks-per-cell`, `data-colors`.
 */
import { CELL_STATES, cellState, type Allocation, type CellState } from './model.js';
import { h } from './dom.js';
import { hex, humanSize } from './format.js';

export const CELL_COLORS: Record<CellState, string> = {
  F: '#1f6feb',
  P: '#8957e5',
  Z: '#d4a72c',
  U: '#8c959f',
  N: '#dfe3e8',
  D: '#3b434b',
  X: '#cf222e',
};

/** When several blocks share a cell: the state drawn is the first of these present among them. */
const PRIORITY: CellState[] = ['X', 'P', 'F', 'Z', 'U', 'D', 'N'];
const CELL_SIZES = [16, 12, 10, 8, 6, 5, 4, 3, 2];
const MAX_HEIGHT = 420;

export interface CellDetails {
  /** First and last block (inclusive) of the cell. */
  firstBlock: number;
  lastBlock: number;
  text: string;
}

export interface AllocationMapOptions {
  allocation: Allocation;
  /** Text for one cell (the page knows the layout: offsets, sector bitmaps, BAT problems). */
  describe: (firstBlock: number, lastBlock: number) => string;
  /** Enter on a cell. */
  open: (firstBlock: number) => void;
}

interface Geometry {
  cellSize: number;
  gap: number;
  columns: number;
  rows: number;
  blocksPerCell: number;
  cells: number;
}

function geometry(blocks: number, width: number): Geometry {
  for (const cellSize of CELL_SIZES) {
    const columns = Math.max(1, Math.floor(width / cellSize));
    const rows = Math.ceil(blocks / columns);
    if (rows * cellSize <= MAX_HEIGHT || cellSize === CELL_SIZES[CELL_SIZES.length - 1]) {
      const maxRows = Math.floor(MAX_HEIGHT / cellSize);
      const blocksPerCell = rows <= maxRows ? 1 : Math.ceil(blocks / (columns * maxRows));
      const cells = Math.ceil(blocks / blocksPerCell);
      return { cellSize, gap: cellSize >= 6 ? 1 : 0, columns, rows: Math.ceil(cells / columns), blocksPerCell, cells };
    }
  }
  throw new Error('unreachable');
}

export class AllocationMap {
  readonly element: HTMLElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly tooltip: HTMLElement;
  private readonly status: HTMLElement;
  private geometry: Geometry | null = null;
  private cellStates: CellState[] = [];
  private selected = 0;
  private readonly resizeObserver: ResizeObserver;
  private lastWidth = 0;

  constructor(private readonly options: AllocationMapOptions) {
    const { allocation } = options;
    const stateCount = CELL_STATES.filter((s) => allocation.counts[s.state] > 0).length;
    this.canvas = h('canvas', {
      id: 'allocation-canvas',
      tabindex: 0,
      role: 'img',
      'aria-describedby': 'allocation-help',
      'aria-label': `Allocation of ${allocation.blocks} payload blocks in ${stateCount} states; use the arrow keys to move between blocks`,
    });
    this.tooltip = h('div', { class: 'tooltip', id: 'allocation-tooltip', role: 'tooltip', hidden: true });
    this.status = h('p', { class: 'cell-info', id: 'cell-info', role: 'status', 'aria-live': 'polite' }, 'Point at a block, or focus the picture and use the arrow keys.');
    const legend = h('ul', { class: 'legend', 'aria-label': 'Block states' });
    for (const s of CELL_STATES) {
      const count = allocation.counts[s.state];
      if (count === 0 && (s.state === 'D' || s.state === 'X')) continue;
      const swatch = h('span', { class: 'swatch', 'aria-hidden': 'true' });
      swatch.style.backgroundColor = CELL_COLORS[s.state];
      const label = s.state === 'N' && allocation.hasParent ? 'not present (from the parent)' : s.label;
      legend.append(h('li', { 'data-state': s.state, 'data-count': count }, swatch, `${label}: ${count}`));
    }
    const frame = h('div', { class: 'canvas-frame' }, this.canvas, this.tooltip);
    this.element = h(
      'div',
      { class: 'allocation' },
      legend,
      frame,
      h('p', { id: 'allocation-help', class: 'hint' }, 'Arrow keys move between blocks, Home and End jump to the first and last, Enter shows the block\'s first sector below.'),
      this.status,
    );
    this.canvas.addEventListener('mousemove', (e) => this.hover(e));
    this.canvas.addEventListener('mouseleave', () => (this.tooltip.hidden = true));
    this.canvas.addEventListener('click', (e) => {
      const cell = this.cellAt(e);
      if (cell !== null) this.select(cell, false);
    });
    this.canvas.addEventListener('keydown', (e) => this.key(e));
    this.canvas.addEventListener('focus', () => this.select(this.selected, false));
    this.resizeObserver = new ResizeObserver(() => {
      const width = frame.clientWidth;
      if (width > 0 && width !== this.lastWidth) this.draw(width);
    });
    this.resizeObserver.observe(frame);
  }

  /** Draws at the frame's width (called on resize; the first call happens once it is in the page). */
  draw(width: number): void {
    this.lastWidth = width;
    const { allocation } = this.options;
    const g = geometry(allocation.blocks, width);
    this.geometry = g;
    this.cellStates = [];
    for (let c = 0; c < g.cells; c++) {
      const first = c * g.blocksPerCell;
      const last = Math.min(allocation.blocks, first + g.blocksPerCell);
      if (g.blocksPerCell === 1) {
        this.cellStates.push(cellState(allocation.cells[first]!));
        continue;
      }
      const seen = new Set<CellState>();
      for (let b = first; b < last; b++) seen.add(cellState(allocation.cells[b]!));
      this.cellStates.push(PRIORITY.find((s) => seen.has(s))!);
    }
    const cssWidth = g.columns * g.cellSize;
    const cssHeight = g.rows * g.cellSize;
    const ratio = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(cssWidth * ratio);
    this.canvas.height = Math.round(cssHeight * ratio);
    this.canvas.style.width = `${cssWidth}px`;
    this.canvas.style.height = `${cssHeight}px`;
    const ctx = this.canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, cssWidth, cssHeight);
    const inner = g.cellSize - g.gap;
    for (let c = 0; c < g.cells; c++) {
      ctx.fillStyle = CELL_COLORS[this.cellStates[c]!];
      ctx.fillRect((c % g.columns) * g.cellSize, Math.floor(c / g.columns) * g.cellSize, inner, inner);
    }
    const d = this.canvas.dataset;
    d.cells = this.cellStates.join('');
    d.columns = String(g.columns);
    d.cellSize = String(g.cellSize);
    d.gap = String(g.gap);
    d.blocksPerCell = String(g.blocksPerCell);
    d.colors = JSON.stringify(CELL_COLORS);
    if (document.activeElement === this.canvas) this.outline(this.selected);
  }

  dispose(): void {
    this.resizeObserver.disconnect();
  }

  private cellAt(e: MouseEvent): number | null {
    const g = this.geometry;
    if (!g) return null;
    const rect = this.canvas.getBoundingClientRect();
    const column = Math.floor((e.clientX - rect.left) / g.cellSize);
    const row = Math.floor((e.clientY - rect.top) / g.cellSize);
    if (column < 0 || column >= g.columns || row < 0) return null;
    const cell = row * g.columns + column;
    return cell < g.cells ? cell : null;
  }

  private blocksOf(cell: number): [number, number] {
    const g = this.geometry!;
    const first = cell * g.blocksPerCell;
    return [first, Math.min(this.options.allocation.blocks, first + g.blocksPerCell) - 1];
  }

  private hover(e: MouseEvent): void {
    const cell = this.cellAt(e);
    if (cell === null) {
      this.tooltip.hidden = true;
      return;
    }
    const [first, last] = this.blocksOf(cell);
    const text = this.options.describe(first, last);
    this.tooltip.textContent = text;
    this.tooltip.hidden = false;
    this.status.textContent = text;
    // Beside the pointer, kept inside the frame.
    const frame = this.tooltip.parentElement!.getBoundingClientRect();
    const x = e.clientX - frame.left + 14;
    const y = e.clientY - frame.top + 14;
    this.tooltip.style.left = `${Math.min(x, Math.max(0, frame.width - this.tooltip.offsetWidth - 4))}px`;
    this.tooltip.style.top = `${y}px`;
  }

  private key(e: KeyboardEvent): void {
    const g = this.geometry;
    if (!g) return;
    let next = this.selected;
    switch (e.key) {
      case 'ArrowRight':
        next++;
        break;
      case 'ArrowLeft':
        next--;
        break;
      case 'ArrowDown':
        next += g.columns;
        break;
      case 'ArrowUp':
        next -= g.columns;
        break;
      case 'Home':
        next = 0;
        break;
      case 'End':
        next = g.cells - 1;
        break;
      case 'PageDown':
        next += g.columns * 8;
        break;
      case 'PageUp':
        next -= g.columns * 8;
        break;
      case 'Enter':
      case ' ':
        e.preventDefault();
        this.options.open(this.blocksOf(this.selected)[0]);
        return;
      default:
        return;
    }
    e.preventDefault();
    this.select(Math.max(0, Math.min(g.cells - 1, next)), true);
  }

  private select(cell: number, fromKeyboard: boolean): void {
    if (!this.geometry) return;
    const previous = this.selected;
    this.selected = cell;
    const [first, last] = this.blocksOf(cell);
    this.status.textContent = this.options.describe(first, last);
    this.canvas.dataset.selected = String(cell);
    this.repaint(previous);
    this.outline(cell);
    if (fromKeyboard) this.tooltip.hidden = true;
  }

  /** Redraws one cell plainly (removing an outline). */
  private repaint(cell: number): void {
    const g = this.geometry;
    const ctx = this.canvas.getContext('2d');
    if (!g || !ctx || cell >= g.cells) return;
    const x = (cell % g.columns) * g.cellSize;
    const y = Math.floor(cell / g.columns) * g.cellSize;
    ctx.clearRect(x, y, g.cellSize, g.cellSize);
    ctx.fillStyle = CELL_COLORS[this.cellStates[cell]!];
    ctx.fillRect(x, y, g.cellSize - g.gap, g.cellSize - g.gap);
  }

  /** Marks the selected cell with a frame (inside the cell, so neighbours stay intact). */
  private outline(cell: number): void {
    const g = this.geometry;
    const ctx = this.canvas.getContext('2d');
    if (!g || !ctx || cell >= g.cells) return;
    const x = (cell % g.columns) * g.cellSize;
    const y = Math.floor(cell / g.columns) * g.cellSize;
    const inner = g.cellSize - g.gap;
    if (inner < 6) return; // too small to frame: the status line still names the block
    ctx.strokeStyle = '#000';
    ctx.lineWidth = Math.max(1, Math.min(2, inner / 4));
    ctx.strokeRect(x + ctx.lineWidth / 2, y + ctx.lineWidth / 2, inner - ctx.lineWidth, inner - ctx.lineWidth);
  }
}

/** The virtual range of blocks first..last as text. */
export function blockRangeText(first: number, last: number, blockSize: number, virtualSize: number): string {
  const start = first * blockSize;
  const end = Math.min((last + 1) * blockSize, virtualSize);
  return `virtual ${hex(start)}-${hex(end - 1)} (${humanSize(start)} to ${humanSize(end)})`;
}
