import { LabIcon } from '@jupyterlab/ui-components';

/* One icon per launcher entry, so the three EnergyOps cards tell themselves apart at a glance:
   a pulse for operations (health, runs), a price chart for the market, a notebook for the
   quickstart. Each is a coloured tile with a white drawing, readable in light and dark themes. */

const tile = (colour: string, drawing: string): string =>
  '<svg xmlns="http://www.w3.org/2000/svg" width="52" height="52" viewBox="0 0 24 24">' +
  `<rect x="1" y="1" width="22" height="22" rx="4" fill="${colour}"/>` +
  `<g fill="none" stroke="#fff" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round">${drawing}</g>` +
  '</svg>';

export const operationsIcon = new LabIcon({
  name: 'energyops:operations',
  svgstr: tile('#15803d', '<polyline points="4,12.5 8,12.5 10,7 14,17 16,12.5 20,12.5"/>')
});

export const marketIcon = new LabIcon({
  name: 'energyops:market',
  svgstr: tile(
    '#1d4ed8',
    '<polyline points="4.5,19.5 4.5,4.5"/><polyline points="4.5,19.5 19.5,19.5"/>' +
      '<polyline points="6.5,15 10,10.5 13,13 18,6.5"/>'
  )
});

export const quickstartIcon = new LabIcon({
  name: 'energyops:quickstart',
  svgstr: tile(
    '#c2410c',
    '<rect x="6.5" y="4.5" width="11" height="15" rx="1"/>' +
      '<polyline points="9,9 15,9"/><polyline points="9,12 15,12"/><polyline points="9,15 13,15"/>'
  )
});
